"""How the integration tests reach a server.

* KINESD_ENDPOINT set (e.g. http://127.0.0.1:4599): use that endpoint, start nothing. This is how
  the same suite settles what correct behaviour is against another implementation (the kinesalite
  npm package). Tests that must start or restart a server of their own are skipped.
* Otherwise start build/kinesd (KINESD_BIN overrides; relative paths are taken from the repository
  root) on a free loopback port with a fresh data directory, wait for GET /healthcheck, and stop
  it with SIGTERM at the end of the session, checking that it exited with status 0.

Markers:
  own_server            the test starts or restarts kinesd itself; skipped with KINESD_ENDPOINT.
  not_kinesalite(why)   the kinesalite npm package lacks this AWS behaviour; skipped against it.
"""

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import helpers

REPO_ROOT = Path(__file__).resolve().parents[2]
ENDPOINT = os.environ.get("KINESD_ENDPOINT", "").rstrip("/")
REMOTE = bool(ENDPOINT)

# Dummy credentials for every client, including the AWS CLI run as a subprocess.
os.environ.update(
    AWS_ACCESS_KEY_ID=helpers.ACCESS_KEY,
    AWS_SECRET_ACCESS_KEY=helpers.SECRET_KEY,
    AWS_DEFAULT_REGION=helpers.REGION,
    AWS_REGION=helpers.REGION,
    AWS_EC2_METADATA_DISABLED="true",
)
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_SESSION_TOKEN", None)

_remote_kind = {}


def remote_is_kinesalite():
    """True when KINESD_ENDPOINT points at the kinesalite npm package.

    KINESD_REMOTE_KINESALITE=1/0 forces the answer; otherwise kinesalite is recognised by its
    ListStreams answer, which has no StreamSummaries (AWS has had them since 2022).
    """
    if not REMOTE:
        return False
    forced = os.environ.get("KINESD_REMOTE_KINESALITE")
    if forced is not None:
        return forced not in ("", "0", "false", "no")
    if "kinesalite" not in _remote_kind:
        resp = helpers.RawApi(ENDPOINT).call("ListStreams", {"Limit": 1})
        _remote_kind["kinesalite"] = resp.status == 200 and "StreamSummaries" not in (resp.json or {})
    return _remote_kind["kinesalite"]


def pytest_configure(config):
    config.addinivalue_line("markers", "own_server: starts or restarts kinesd itself")
    config.addinivalue_line("markers", "not_kinesalite(reason): kinesalite lacks this AWS behaviour")


def pytest_runtest_setup(item):
    if item.get_closest_marker("own_server") and REMOTE:
        pytest.skip("starts its own kinesd; KINESD_ENDPOINT is set")
    marker = item.get_closest_marker("not_kinesalite")
    if marker and remote_is_kinesalite():
        pytest.skip("kinesalite deviates from AWS: " + (marker.args[0] if marker.args else ""))


# ----------------------------------------------------------------------------------------------
# Starting kinesd


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kinesd_binary():
    path = Path(os.environ.get("KINESD_BIN", "build/kinesd"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


# The shared server runs the product's defaults: throughput limits on and 500 ms lifecycle
# transitions (CREATING, UPDATING, DELETING), as users meet them. Its clients (the kinesis,
# kinesis_unchecked and api fixtures) retry a call a rate limit turned away, as every AWS SDK
# does, and see every other answer as it is; tests wait for transitions (helpers.wait_for_status).
# A test that needs otherwise starts its own server through kinesd_factory, whose servers run
# without throughput limits (they test restarts, faults, retention, scaling, not rates; the
# limit tests pass {"--no-limits": False}). A value of None passes a flag without a value;
# False drops a default flag.
DEFAULT_FLAGS = {
    "--log-level": "warn",
}
FACTORY_FLAGS = {"--no-limits": None}


class KinesdServer:
    """One kinesd process on a data directory; restart() keeps the directory."""

    def __init__(self, data_dir, flags=None):
        self.data_dir = Path(data_dir)
        self.flags = dict(DEFAULT_FLAGS, **(flags or {}))
        self.proc = None
        self.port = None
        self.log_path = self.data_dir.parent / (self.data_dir.name + ".log")
        self._log = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        binary = kinesd_binary()
        if not binary.exists():
            pytest.fail(f"{binary} does not exist: build it (make) or set KINESD_ENDPOINT")
        self.port = free_port()
        cmd = [str(binary), "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        for flag, value in self.flags.items():
            if value is False:
                continue
            cmd += [flag] if value is None else [flag, value]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        self._wait_healthy()
        return self

    def _wait_healthy(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"kinesd exited with {self.proc.returncode} while starting:\n{self.log()}")
            try:
                resp = helpers.http_request(self.endpoint, "GET", "/healthcheck", timeout=1)
                if resp.status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        self.proc.kill()
        pytest.fail(f"kinesd did not answer GET /healthcheck within {timeout}s:\n{self.log()}")

    def stop(self, timeout=10.0):
        """SIGTERM, wait, and return the exit status (kills and fails if it does not exit)."""
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"kinesd did not exit within {timeout}s of SIGTERM:\n{self.log()}")
        finally:
            if self._log:
                self._log.close()
                self._log = None
        return code

    def restart(self):
        code = self.stop()
        assert code == 0, f"kinesd exited with {code} on SIGTERM:\n{self.log()}"
        return self.start()

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


class RemoteServer:
    def __init__(self, endpoint):
        self.endpoint = endpoint


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    if REMOTE:
        yield RemoteServer(ENDPOINT)
        return
    root = tmp_path_factory.mktemp("kinesd")
    srv = KinesdServer(root / "data").start()
    yield srv
    code = srv.stop()
    assert code == 0, f"kinesd exited with {code} on SIGTERM:\n{srv.log()}"


@pytest.fixture(scope="session")
def endpoint(server):
    return server.endpoint


@pytest.fixture(scope="session")
def kinesis(endpoint):
    return helpers.make_client(endpoint, retry_rate_limited=True)


@pytest.fixture(scope="session")
def kinesis_unchecked(endpoint):
    """boto3 without client-side parameter validation, to send values AWS must reject."""
    return helpers.make_client(endpoint, validate=False, retry_rate_limited=True)


@pytest.fixture(scope="session")
def api(endpoint):
    return helpers.RawApi(endpoint, retry_rate_limited=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test's report says, for each server kinesd_factory started in it, whether the
    process still runs (or how it ended) and the tail of its log: a connection error alone does
    not tell a crash from a slow or closed connection."""
    report = (yield).get_result()
    if not (report.failed and report.when == "call"):
        return  # a failed start or stop already carries the log in its message
    for srv in getattr(item, "kinesd_servers", ()):
        proc = srv.proc
        state = "stopped" if proc is None else "running" if proc.poll() is None else f"exited with {proc.returncode}"
        report.sections.append((f"kinesd on {srv.data_dir.name}: {state}", srv.log()))


@pytest.fixture
def kinesd_factory(tmp_path, request):
    """Start extra kinesd servers: kinesd_factory(flags={"--create-stream-ms": "0"}).

    They run the product's defaults except for FACTORY_FLAGS (no throughput limits).

    Each gets its own data directory unless data_dir is given; all are stopped at the end of the
    test, and each must exit with status 0.
    """
    if REMOTE:
        pytest.skip("starts its own kinesd; KINESD_ENDPOINT is set")
    started = request.node.kinesd_servers = []

    def start(flags=None, data_dir=None):
        if data_dir is None:
            data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=tmp_path))
        srv = KinesdServer(data_dir, dict(FACTORY_FLAGS, **(flags or {}))).start()
        started.append(srv)
        return srv

    yield start
    failures = []
    for srv in started:
        code = srv.stop()
        if code != 0:
            failures.append(f"kinesd exited with {code} on SIGTERM:\n{srv.log()}")
    assert not failures, "\n".join(failures)


# ----------------------------------------------------------------------------------------------
# Streams


@pytest.fixture
def stream_name(request, kinesis):
    """A fresh stream name for this test; any stream of that name is deleted afterwards."""
    name = helpers.unique_name(request.node.name.replace("test_", "", 1))
    yield name
    _delete_quietly(kinesis, name)


@pytest.fixture
def make_stream(request, kinesis):
    """make_stream(shards=1) -> name of a new ACTIVE stream, deleted after the test."""
    names = []

    def make(shards=1, name=None):
        name = name or helpers.unique_name(request.node.name.replace("test_", "", 1))
        kinesis.create_stream(StreamName=name, ShardCount=shards)
        names.append(name)
        helpers.wait_for_status(kinesis, name)
        return name

    yield make
    for name in names:
        _delete_quietly(kinesis, name)


def _delete_quietly(client, name):
    try:
        client.delete_stream(StreamName=name)
    except Exception:  # noqa: BLE001 - cleanup only; the stream may not exist
        pass
