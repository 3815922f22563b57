"""What SigV4 verification costs: PutRecords with --auth on and off, in alternating order.

    python3 tools/bench/auth_cost.py build/kinesd [seconds per run] [rounds]

Each run starts kinesd (durable, --no-limits, 4 shards) on a fresh data directory, signs one
PutRecords request of 500 x 100-byte records with botocore, and replays it over keep-alive
connections from 4 threads (a signature stays valid for 5 minutes, so the client does no
per-request work). Prints records/s and the server's CPU time per request for both modes:
the CPU figure is the steadier one on a loaded machine.
"""
import base64, http.client, json, os, shutil, socket, subprocess, sys, tempfile, threading, time
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

BIN = sys.argv[1]
SECS = float(sys.argv[2]) if len(sys.argv) > 2 else 8
KEY = ("AKIABENCH0000000001", "bench/secret/0123456789")

def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def start(auth):
    d = tempfile.mkdtemp()
    p = port()
    args = [BIN, "--port", str(p), "--data-dir", d + "/data", "--no-limits", "--create-stream-ms", "0", "--log-level", "warn"]
    if auth:
        open(d + "/creds", "w").write(f"[b]\naws_access_key_id = {KEY[0]}\naws_secret_access_key = {KEY[1]}\n")
        args += ["--auth", d + "/creds"]
    proc = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            c = http.client.HTTPConnection("127.0.0.1", p); c.request("GET", "/healthcheck"); c.getresponse().read(); break
        except OSError:
            time.sleep(0.05)
    return proc, p, d

def signed(p, op, payload):
    body = json.dumps(payload).encode()
    req = AWSRequest(method="POST", url=f"http://127.0.0.1:{p}/", data=body,
                     headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Kinesis_20131202." + op})
    SigV4Auth(Credentials(*KEY), "kinesis", "us-east-1").add_auth(req)
    return body, dict(req.headers.items())

def run(auth):
    proc, p, d = start(auth)
    body, h = signed(p, "CreateStream", {"StreamName": "bench", "ShardCount": 4})
    c = http.client.HTTPConnection("127.0.0.1", p); c.request("POST", "/", body, h); assert c.getresponse().read() is not None
    time.sleep(0.5)
    recs = [{"PartitionKey": f"pk-{i}", "Data": base64.b64encode(os.urandom(100)).decode()} for i in range(500)]
    body, h = signed(p, "PutRecords", {"StreamName": "bench", "Records": recs})
    count = [0]; stop = time.time() + SECS; lock = threading.Lock()
    def worker():
        c = http.client.HTTPConnection("127.0.0.1", p)
        n = 0
        while time.time() < stop:
            c.request("POST", "/", body, h); r = c.getresponse(); data = r.read()
            assert r.status == 200, data[:300]
            n += 1
        with lock: count[0] += n
    ts = [threading.Thread(target=worker) for _ in range(4)]
    t0 = time.time(); [t.start() for t in ts]; [t.join() for t in ts]; dt = time.time() - t0
    f = open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()
    cpu = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    proc.terminate(); proc.wait()
    shutil.rmtree(d, ignore_errors=True)
    return count[0] * 500 / dt, cpu / count[0] * 1e6

for rnd in range(int(sys.argv[3]) if len(sys.argv) > 3 else 2):
    first = rnd % 2 == 1
    a = run(first); b = run(not first)
    on, off = (a, b) if first else (b, a)
    print(f"round {rnd+1}: records/s off {off[0]:,.0f} on {on[0]:,.0f} (ratio {on[0]/off[0]:.3f}); "
          f"server CPU per 500-record request off {off[1]:.0f} us, on {on[1]:.0f} us (+{on[1]-off[1]:.0f} us, "
          f"{(on[1]-off[1])/off[1]*100:+.1f}%)", flush=True)
