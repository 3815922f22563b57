"""SubscribeToShard with the AWS SDK for Go v1 (HTTP/1.1 chunked), built offline in GOPATH mode
from Debian's golang-go and golang-github-aws-aws-sdk-go-dev: records written before and while
it is subscribed arrive in order and byte-exact, and it hears an empty event while idle."""

import base64
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

import helpers

pytestmark = pytest.mark.own_server
GOCODE = Path("/usr/share/gocode")
SRC = Path(__file__).parent / "go" / "subscribe"


@pytest.fixture(scope="module")
def go_client(tmp_path_factory):
    if not shutil.which("go") or not (GOCODE / "src/github.com/aws/aws-sdk-go").is_dir():
        pytest.skip("golang-go and golang-github-aws-aws-sdk-go-dev are not installed")
    out = tmp_path_factory.mktemp("go") / "subscribe"
    env = dict(os.environ, GO111MODULE="off", GOPATH=str(GOCODE), GOFLAGS="", GOPROXY="off",
               GOCACHE=str(out.parent / "cache"))
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=SRC, env=env, check=True, capture_output=True,
                   timeout=600)
    return out


def test_the_go_sdk_receives_records_in_order_and_byte_exact(go_client, kinesd_factory):
    srv = kinesd_factory(flags={"--register-consumer-ms": "0"})
    k = helpers.make_client(srv.endpoint)
    k.create_stream(StreamName="s", ShardCount=1)
    helpers.wait_for_status(k, "s")
    arn = k.register_stream_consumer(StreamARN=helpers.stream_arn("s"), ConsumerName="go")["Consumer"]["ConsumerARN"]
    data = [bytes(range(256)), b"", b"go"]
    seqs = [k.put_record(StreamName="s", PartitionKey="p", Data=data[0])["SequenceNumber"]]
    proc = subprocess.Popen([str(go_client), srv.endpoint, arn, "shardId-000000000000", str(len(data))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def later():
        time.sleep(0.5)
        for d in data[1:]:
            seqs.append(k.put_record(StreamName="s", PartitionKey="p", Data=d)["SequenceNumber"])

    t = threading.Thread(target=later)
    t.start()
    out, err = proc.communicate(timeout=60)
    t.join()
    assert proc.returncode == 0, err
    lines = [line.split(" ") for line in out.splitlines() if line != "empty"]
    assert [s for s, _ in lines] == seqs
    assert [base64.b64decode(d) for _, d in lines] == data
    assert "empty" in out.splitlines()
