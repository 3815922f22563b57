"""Several kinesd front-ends over one PostgreSQL, and a proxy that sends each request to one at random.

Used two ways:
* `python3 tests/integration/frontends.py --count 2 -- CMD...` (under tools/with-postgres.sh):
  start the front-ends and the proxy, run CMD with KINESD_ENDPOINT naming the proxy, stop them.
  tools/run-pg-suite.sh runs the whole integration suite that way.
* imported by test_pg_frontends.py, which starts, kills and restarts front-ends itself.

The proxy picks a front-end per request (not per connection), so consecutive calls of one
client land on different front-ends and every answer has to agree with what another one did;
a client connection still has upstream connections of its own (RandomProxy says how).
"""

import argparse
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


class _Conn:
    """A socket with a read buffer."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def head(self, cap=64 * 1024):
        """The bytes up to and including the first CRLFCRLF; None on EOF or past cap."""
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > cap or not self.fill():
                return None
        i = self.buf.index(b"\r\n\r\n") + 4
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def line(self, cap=4096):
        while b"\r\n" not in self.buf:
            if len(self.buf) > cap or not self.fill():
                return None
        i = self.buf.index(b"\r\n") + 2
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def take(self, n, sink):
        """Pass n bytes to sink(bytes) as they come; False on EOF first."""
        while n > 0:
            if not self.buf and not self.fill():
                return False
            piece, self.buf = self.buf[:n], self.buf[n:]
            n -= len(piece)
            sink(piece)
        return True

    def chunked(self, sink):
        """Pass a chunked body (chunks, last chunk, trailers) to sink unchanged, each chunk as it
        comes (an event stream flows through); False when it is malformed or cut."""
        while True:
            size_line = self.line()
            if size_line is None:
                return False
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                return False
            sink(size_line)
            if size == 0:
                while True:  # trailers, up to the empty line
                    t = self.line()
                    if t is None:
                        return False
                    sink(t)
                    if t == b"\r\n":
                        return True
            if not self.take(size + 2, sink):
                return False


class _Unframed(Exception):
    """A message whose framing the proxy does not follow: the connection is spliced instead."""


def _parse_head(head):
    """(first line, {lower-case name: value}) of a message head; _Unframed when malformed."""
    lines = head[:-4].split(b"\r\n")
    fields = {}
    for raw in lines[1:]:
        name, sep, value = raw.partition(b":")
        if not sep or not name or name != name.strip():
            raise _Unframed()
        key = name.decode("latin-1").lower()
        if key in fields and key in ("content-length", "transfer-encoding"):
            raise _Unframed()
        fields[key] = value.strip().decode("latin-1")
    return lines[0], fields


def _framing(fields):
    """("chunked", None) or ("length", n) or ("none", None); _Unframed for anything else."""
    te = fields.get("transfer-encoding")
    if te is not None:
        if te.lower() != "chunked" or "content-length" in fields:
            raise _Unframed()
        return "chunked", None
    cl = fields.get("content-length")
    if cl is not None:
        if not cl.isdigit():
            raise _Unframed()
        return "length", int(cl)
    return "none", None


class RandomProxy:
    """A proxy on loopback in front of several backends, as a balancer in HTTP mode is.

    Each HTTP/1.1 request goes to a backend chosen at random (a refused connection: the next
    one), so consecutive calls of one client land on different front-ends and every answer has
    to agree with what another one did. A client connection keeps one upstream connection per
    backend, never shared with another client, and closes when its upstream closes or either
    side says Connection: close; bodies and answers are relayed as they come, chunked or not
    (an event stream flows through chunk by chunk). What the proxy does not follow message by
    message (HTTP/2, TLS, an Upgrade or Expect: 100-continue, a head it cannot frame) pins the
    client connection to one random backend and relays its bytes both ways unchanged."""

    def __init__(self, backends):
        self.backends = list(backends)  # endpoints "http://127.0.0.1:port"
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(256)
        self.port = self.listener.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopping = True
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            pass
        self.thread.join(timeout=5)
        self.listener.close()

    def _accept(self):
        while not self.stopping:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            if self.stopping:
                sock.close()
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _connect(self):
        """A socket to a random live backend (a refused one: the next); None when none answers."""
        for backend in random.sample(self.backends, len(self.backends)):
            host, port = backend.split("//")[1].split(":")
            try:
                sock = socket.create_connection((host, int(port)), timeout=120)
            except OSError:
                continue  # a front-end that is down: try another, as a balancer would
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        return None

    @staticmethod
    def _alive(sock):
        """Whether an idle upstream connection is still open (the server may have closed it)."""
        try:
            sock.setblocking(False)
            try:
                return sock.recv(1, socket.MSG_PEEK) != b""
            except BlockingIOError:
                return True
            finally:
                sock.setblocking(True)
        except OSError:
            return False

    def _serve(self, sock):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(300)
        client = _Conn(sock)
        upstreams = {}  # backend -> _Conn, this client connection's own
        try:
            self._relay_requests(client, upstreams)
        except OSError:
            pass
        finally:
            for up in upstreams.values():
                up.sock.close()
            sock.close()

    def _relay_requests(self, client, upstreams):
        while True:
            if not client.buf and not client.fill():
                return
            if client.buf[:1] == b"\x16":
                return self._splice(client, b"")  # TLS: pinned
            head = client.head()
            if head is None:
                return self._splice(client, b"") if client.buf else None
            try:
                if head.startswith(b"PRI * HTTP/2.0\r\n"):
                    raise _Unframed()  # HTTP/2 with prior knowledge: pinned
                line, fields = _parse_head(head)
                kind, length = _framing(fields)
                if "upgrade" in fields or "expect" in fields:
                    raise _Unframed()
            except _Unframed:
                return self._splice(client, head)
            closing = "close" in fields.get("connection", "").lower() or line.endswith(b"HTTP/1.0")
            up = self._upstream(upstreams)
            if up is None:
                client.sock.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            up.sock.sendall(head)
            sent = True
            if kind == "chunked":
                sent = client.chunked(up.sock.sendall)
            elif kind == "length":
                sent = client.take(length, up.sock.sendall)
            if not sent:
                return
            if not self._relay_answer(up, client, line.split(b" ")[0] == b"HEAD"):
                return  # an answer that ends with its connection: so does the client's
            if closing:
                return

    def _upstream(self, upstreams):
        """This client connection's own connection to a random live backend, opened when needed."""
        backend = random.choice(self.backends)
        up = upstreams.pop(backend, None)
        if up is not None and not up.buf and self._alive(up.sock):
            upstreams[backend] = up
            return up
        if up is not None:
            up.sock.close()
        sock = self._connect()
        if sock is None:
            return None
        name = "http://%s:%d" % sock.getpeername()[:2]
        if name in upstreams:
            upstreams.pop(name).sock.close()
        upstreams[name] = _Conn(sock)
        return upstreams[name]

    def _relay_answer(self, up, client, head_request):
        """Relay one answer (after any 1xx) to the client; False when the connection ends."""
        while True:
            head = up.head()
            if head is None:
                if up.buf:
                    client.sock.sendall(up.buf)
                return False
            line, fields = _parse_head(head)
            parts = line.split(b" ")
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            client.sock.sendall(head)
            if 100 <= status < 200 and status != 101:
                continue
            break
        keep = "close" not in fields.get("connection", "").lower()
        if head_request or status in (204, 304) or status < 200:
            return keep and status != 101
        kind, length = _framing(fields)
        if kind == "chunked":
            return up.chunked(client.sock.sendall) and keep
        if kind == "length":
            return up.take(length, client.sock.sendall) and keep
        while up.buf or up.fill():  # delimited by the end of the connection
            client.sock.sendall(up.buf)
            up.buf = b""
        return False

    def _splice(self, client, pending):
        """Pin the client connection to one random backend and relay bytes both ways."""
        sock = self._connect()
        if sock is None:
            return
        sock.sendall(pending + client.buf)
        client.buf = b""

        def pump(src, dst):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
            except OSError:
                pass
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        back = threading.Thread(target=pump, args=(sock, client.sock), daemon=True)
        back.start()
        pump(client.sock, sock)
        back.join()
        sock.close()


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
    for i, f in enumerate(fronts):
        code = f.stop()
        if code != 0:
            print(f"kinesd front-end exited with {code}:\n{f.log()}", file=sys.stderr)
            status = status or 1
        elif status != 0:  # what the front-ends warned of, to explain the failure
            tail = "\n".join(f.log().splitlines()[-60:])
            print(f"kinesd front-end {i} log (last lines):\n{tail}", file=sys.stderr)
    sys.exit(status)


if __name__ == "__main__":
    main()
