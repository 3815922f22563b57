"""Several kinesd front-ends over one PostgreSQL, and a proxy that sends each request to one at random.

Used two ways:
* `python3 tests/integration/frontends.py --count 2 -- CMD...` (under tools/with-postgres.sh):
  start the front-ends and the proxy, run CMD with KINESD_ENDPOINT naming the proxy, stop them.
  tools/run-pg-suite.sh runs the whole integration suite that way.
* imported by test_pg_frontends.py, which starts, kills and restarts front-ends itself.

The proxy picks a front-end per request (not per connection), so consecutive calls of one
client land on different front-ends and every answer has to agree with what another one did.
"""

import argparse
import http.client
import http.server
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_database(base_url, name):
    """CREATE DATABASE name on the server of base_url (a .../postgres?host=... URL); its URL."""
    subprocess.run(["psql", base_url, "-qAtc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
                   check=True, capture_output=True)
    subprocess.run(["psql", base_url, "-qAtc", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    return base_url.replace("/postgres?", f"/{name}?")


class Frontend:
    """One kinesd process on a PostgreSQL store."""

    def __init__(self, store_url, flags=(), binary=None):
        self.store_url = store_url
        self.flags = list(flags)
        self.binary = binary or os.environ.get("KINESD_BIN", str(REPO / "build" / "kinesd"))
        if not os.path.isabs(self.binary):
            self.binary = str(REPO / self.binary)
        self.port = free_port()
        self.proc = None
        self.log_file = tempfile.TemporaryFile()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        cmd = [self.binary, "--host", "127.0.0.1", "--port", str(self.port), "--store", self.store_url,
               "--log-level", "warn", *self.flags]
        self.proc = subprocess.Popen(cmd, stdout=self.log_file, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kinesd exited with {self.proc.returncode} while starting:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.endpoint + "/healthcheck", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("kinesd did not answer /healthcheck:\n" + self.log())

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        """SIGTERM; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self):
        self.log_file.seek(0)
        return self.log_file.read().decode(errors="replace")


class RandomProxy:
    """An HTTP/1.1 proxy on loopback sending each request to a random live backend."""

    def __init__(self, backends):
        self.backends = list(backends)  # endpoints "http://127.0.0.1:port"
        self.port = free_port()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def relay(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                order = random.sample(proxy.backends, len(proxy.backends))
                for i, backend in enumerate(order):
                    host, port = backend.split("//")[1].split(":")
                    conn = http.client.HTTPConnection(host, int(port), timeout=60)
                    try:
                        conn.request(self.command, self.path, body=body, headers=headers)
                        resp = conn.getresponse()
                        data = resp.read()
                    except (ConnectionRefusedError, ConnectionResetError):
                        conn.close()
                        if i + 1 < len(order):
                            continue  # a front-end that is down: try another, as HAProxy would
                        self.send_error(502)
                        return
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in HOP_HEADERS and k.lower() != "content-length":
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    conn.close()
                    return

            do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_HEAD = relay

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=2)
    ap.add_argument("--flag", action="append", default=[], help="a kinesd flag (repeatable)")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    base = os.environ["KINESD_PG_URL"]
    store = fresh_database(base, "kinesd_suite")
    sys.path.insert(0, str(Path(__file__).parent))
    import conftest  # the shared test server's flags, so the suite meets what it expects

    flags = []
    for k, v in conftest.DEFAULT_FLAGS.items():
        if v is not False:
            flags += [k] if v is None else [k, v]
    fronts = [Frontend(store, flags + args.flag).start() for _ in range(args.count)]
    proxy = RandomProxy([f.endpoint for f in fronts]).start()
    env = dict(os.environ, KINESD_ENDPOINT=proxy.endpoint, KINESD_REMOTE_KINESALITE="0")
    status = subprocess.call(cmd, env=env)
    proxy.stop()
    for f in fronts:
        code = f.stop()
        if code != 0:
            print(f"kinesd front-end exited with {code}:\n{f.log()}", file=sys.stderr)
            status = status or 1
    sys.exit(status)


if __name__ == "__main__":
    main()
