"""The web console at GET /console, in headless Chromium driven through its DevTools protocol.

Chromium is Debian's `chromium`; the protocol is spoken over a WebSocket with Debian's
python3-websocket. Every test fails on any error the page reports: an uncaught exception,
console.error, or a failed load (Chromium logs those as errors too). Screenshots are saved
in the test's temporary directory."""

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3
import pytest

import helpers
from test_taxi import expected_windows, hotspots, replay

websocket = pytest.importorskip("websocket", reason="python3-websocket is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(not CHROMIUM, reason="Debian's chromium is not installed")


class Page:
    """One browser tab over the DevTools protocol: commands, events, evaluation, screenshots."""

    def __init__(self, ws_url):
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.ids = itertools.count(1)
        self.errors = []
        for domain in ("Runtime", "Log", "Page"):
            self.call(domain + ".enable")

    def _event(self, msg):
        m, p = msg.get("method"), msg.get("params", {})
        if m == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            self.errors.append("exception: " + (d.get("exception", {}).get("description") or d.get("text", "")))
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.errors.append("console." + p["type"] + ": " + " ".join(str(a.get("value", a.get("description")))
                                                                        for a in p.get("args", [])))
        elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
            e = p["entry"]
            self.errors.append(f"log ({e.get('source')}): {e.get('text')} {e.get('url', '')}")

    def call(self, method, **params):
        n = next(self.ids)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def js(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expr, timeout=15, what=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = self.js(expr)
            if v:
                return v
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what or expr}; page errors: {self.errors}")

    def goto(self, url):
        self.call("Page.navigate", url=url)
        self.wait("document.readyState === 'complete'")

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def close(self):
        self.ws.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium")
    proc = subprocess.Popen([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                             "--remote-debugging-port=0", "--remote-allow-origins=*", f"--user-data-dir={profile}",
                             "--window-size=1280,1100", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()) and time.monotonic() < deadline:
            assert proc.poll() is None, "chromium exited while starting"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = Page(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])
        yield page
        page.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def api_refusal(error, endpoint):
    """Chromium logs every 4xx answer of fetch as an error; a Kinesis error answer of POST /
    (a stream deleted while a poller looks at it) is the API working, not the page failing."""
    return error.startswith("log (network)") and "status of 400" in error and error.endswith(endpoint + "/")


@pytest.fixture
def page(browser, endpoint, tmp_path):
    browser.errors.clear()
    browser.goto(endpoint + "/console")
    yield browser
    browser.screenshot(tmp_path / "last.png")
    errors = [e for e in browser.errors if not api_refusal(e, endpoint)]
    assert errors == [], f"the page reported errors: {errors}"


def set_value(page, id_, value):
    page.js(f"(() => {{ const e = document.getElementById({json.dumps(id_)}); e.value = {json.dumps(value)};"
            f" e.dispatchEvent(new Event('change')); }})()")


def click(page, selector):
    page.js(f"document.querySelector({json.dumps(selector)}).click()")


def test_the_console_loads_without_errors_and_lists_a_stream_the_test_created(page, make_stream, tmp_path):
    name = make_stream(shards=3)
    page.wait(f"!!document.querySelector('#streams-table tr[data-stream={json.dumps(name)}]')", what="the stream's row")
    row = page.js(f"document.querySelector('#streams-table tr[data-stream={json.dumps(name)}]').innerText")
    assert "ACTIVE" in row and "PROVISIONED" in row and "24 h" in row and "\t3\t" in row, row
    assert page.js("document.title") == "kinesd console"
    page.screenshot(tmp_path / "streams.png")
    assert page.errors == [], page.errors  # not even an API error answer


def test_the_fallback_sha256_and_hmac_match_python(page):
    # used when the page is not a secure context (no WebCrypto): plain http from another host
    import hashlib
    import hmac

    for n in (0, 1, 55, 56, 63, 64, 65, 119, 1000):
        text = "".join(chr(97 + i % 26) for i in range(n)) + "é"
        assert page.js(f"SigV4.fallback.sha256({json.dumps(text)})") == hashlib.sha256(text.encode()).hexdigest()
        key = "k" * (n % 100)
        assert page.js(f"SigV4.fallback.hmac({json.dumps(key)}, {json.dumps(text)})") == \
            hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()


def test_a_stream_created_and_deleted_through_the_forms(page, kinesis, stream_name):
    set_value(page, "create-name", stream_name)
    set_value(page, "create-shards", "2")
    click(page, "#create-submit")
    page.wait("document.getElementById('create-result').textContent.startsWith('Creating')", what="CreateStream's answer")
    helpers.wait_for_status(kinesis, stream_name)
    assert kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]["OpenShardCount"] == 2
    page.wait(f"!!document.querySelector('a[data-stream={json.dumps(stream_name)}]')", what="the new stream's link")
    click(page, f"a[data-stream={json.dumps(stream_name)}]")
    page.wait("document.querySelectorAll('#shardmap g.shard').length === 2", what="two shards in the map")
    click(page, "#delete-button")
    click(page, "#delete-confirm")
    helpers.wait_until_gone(kinesis, stream_name)
    page.wait("location.hash === '#/streams'")


def test_a_record_put_through_the_form_shows_in_the_live_tail(page, make_stream, kinesis, tmp_path):
    name = make_stream(shards=1)
    kinesis.split_shard(StreamName=name, ShardToSplit="shardId-000000000000",
                        NewStartingHashKey=str(2**127))
    helpers.wait_for_status(kinesis, name)
    page.goto(page.js("location.origin") + "/console#/stream/" + name)
    # the shard map draws the parent above its two children
    page.wait("document.querySelectorAll('#shardmap g.shard').length === 3", what="three shards in the map")
    assert page.js("document.querySelectorAll('#shardmap line').length") == 2
    set_value(page, "put-hash", "1")  # the lower child, where the tail starts
    page.wait("document.getElementById('tail-status').dataset.state === 'following'", what="the tail to follow")
    marker = f"tail-{time.time_ns()}"
    set_value(page, "put-data", json.dumps({"marker": marker, "n": 1}))
    click(page, "#put-submit")
    page.wait("document.getElementById('put-result').textContent.includes('shardId-000000000001')",
              what="the put's answer")
    page.wait(f"document.getElementById('tail').textContent.includes({json.dumps(marker)})", what="the record in the tail")
    set_value(page, "tail-format", "json")
    assert f'"marker": "{marker}",\n  "n": 1' in page.js("document.querySelector('#tail pre').textContent")
    set_value(page, "tail-format", "hex")
    hexdump = page.js("document.querySelector('#tail pre').textContent")
    assert hexdump.startswith("000000  7b 22 6d 61 72 6b 65 72"), hexdump  # {"marker
    page.screenshot(tmp_path / "tail.png")
    # and the record is really in the stream
    recs = helpers.read_all(kinesis, name, "shardId-000000000001")
    assert [json.loads(r["Data"])["marker"] for r in recs] == [marker]


def test_the_heat_map_draws_the_cells_of_a_replayed_window(page, endpoint, kinesis, tmp_path):
    src, out = helpers.unique_name("taxi"), helpers.unique_name("hot")
    try:
        replay(endpoint, src, count=400)
        p = hotspots(endpoint, src, out, tmp_path / "cp.json")
        assert p.returncode == 0, p.stderr
        want = expected_windows(count=400)
        last = want[max(want)]
        page.goto(page.js("location.origin") + "/console#/taxi/" + out)
        page.wait(f"document.querySelectorAll('#heat rect.cell').length === {len(last)}",
                  what=f"{len(last)} cells of the last window")
        drawn = page.js("[...document.querySelectorAll('#heat rect.cell')].map(r => r.dataset.cell).sort()")
        assert drawn == sorted(last)
        assert page.js("document.querySelectorAll('#heat polygon.land').length") == 4
        top = page.js("document.querySelector('#taxi-top tbody tr').innerText")
        best = max(last.items(), key=lambda kv: (kv[1][0], [-ord(c) for c in kv[0]]))
        assert best[0] in top and str(best[1][0]) in top, top
        page.screenshot(tmp_path / "heatmap.png")
    finally:
        for s in (src, out):
            kinesis.delete_stream(StreamName=s)


def test_the_console_files_are_served_with_their_types_and_nothing_else(endpoint):
    r = helpers.http_request(endpoint, "GET", "/console")
    assert r.status == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    for path, kind in (("/console/", "text/html"), ("/console/console.js", "text/javascript"),
                       ("/console/console.css", "text/css"), ("/console/sigv4.js", "text/javascript")):
        got = helpers.http_request(endpoint, "GET", path)
        assert got.status == 200 and got.headers["content-type"].startswith(kind), path
    for path in ("/console/nope.js", "/console/../Makefile", "/console/%2e%2e/server/main.c"):
        assert helpers.http_request(endpoint, "GET", path).status == 404, path
    assert b"http://" not in r.raw and b"https://" not in r.raw


@pytest.mark.own_server
def test_no_console_turns_the_console_off(kinesd_factory):
    srv = kinesd_factory(flags={"--no-console": None})
    r = helpers.http_request(srv.endpoint, "GET", "/console")
    assert r.status == 403 and b"AccessDeniedException" in r.raw


@pytest.mark.own_server
def test_with_auth_the_console_asks_for_credentials_and_signs_with_them(browser, kinesd_factory, tmp_path):
    creds = tmp_path / "credentials"
    creds.write_text("[console-user]\naws_access_key_id = AKIACONSOLETEST\n"
                     "aws_secret_access_key = console/secret+key/0123456789\n")
    srv = kinesd_factory(flags={"--auth": str(creds)})
    k = boto3.client("kinesis", endpoint_url=srv.endpoint, region_name="us-east-1",
                     aws_access_key_id="AKIACONSOLETEST", aws_secret_access_key="console/secret+key/0123456789")
    k.create_stream(StreamName="signed", ShardCount=1)
    browser.errors.clear()
    browser.goto(srv.endpoint + "/console")
    # the placeholders are refused: the dialog opens and says why
    browser.wait("document.getElementById('creds').open", what="the credentials dialog")
    assert "UnrecognizedClientException" in browser.js("document.getElementById('banner').textContent")
    refused = list(browser.errors)
    assert refused and all("400" in e for e in refused), refused  # the refused calls, nothing else
    browser.errors.clear()
    set_value(browser, "creds-key", "AKIACONSOLETEST")
    set_value(browser, "creds-secret", "console/secret+key/0123456789")
    click(browser, "#creds-save")
    browser.wait("!!document.querySelector('#streams-table tr[data-stream=\"signed\"]')", what="the signed listing")
    assert browser.js("document.getElementById('banner').hidden")
    browser.screenshot(tmp_path / "signed.png")
    browser.js("localStorage.removeItem('kinesd.creds')")
    assert browser.errors == [], browser.errors
