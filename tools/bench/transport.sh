#!/usr/bin/env bash
# The transport modes of the benchmark: PutRecord (100 B, one partition key) through h2load
# (Debian nghttp2-client) against one kinesd started with --tls-self-signed, each for
# BENCH_SECONDS:
#   h1 16 conn        HTTP/1.1 cleartext, 16 keep-alive connections, one request each at a time
#   h2c 1 conn x 64   HTTP/2 prior knowledge, one connection, 64 concurrent streams
#   https h1 16 conn  HTTP/1.1 over TLS, 16 connections
#   h2 tls 1 conn x 64  HTTP/2 over TLS (ALPN h2), one connection, 64 streams
# The request is signed once (the signature stays valid for minutes; kinesd runs without
# --auth here anyway). Prints RESULT lines and a table: each figure, the h2 figures as a share of
# the 16-connection HTTP/1.1 one, and TLS as a share of cleartext. When run.sh's putrecord mode
# ran before (KBENCH_PUTRECORD_OUT), its kbench figure is shown beside them.
#
# Usage: tools/bench/transport.sh   (run.sh calls it for BENCH_MODES containing "transport")
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
SECS=${BENCH_SECONDS:-8}
KINESD=${KINESD_BIN:-build/kinesd}
LOG_DIR=${BENCH_LOG_DIR:-build/bench}
KBENCH=build/kbench
mkdir -p "$LOG_DIR"
command -v h2load >/dev/null || { echo "transport.sh: h2load not installed (nghttp2-client)" >&2; exit 1; }
[[ -x $KBENCH ]] || make --no-print-directory build/kbench

DIR=$(mktemp -d)
PID=
cleanup() {
    if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf -- "$DIR"
}
trap cleanup EXIT

PORT=$("$KBENCH" --mode freeport)
"$KINESD" --host 127.0.0.1 --port "$PORT" --data-dir "$DIR/data" --create-stream-ms 0 --log-level warn \
    --no-limits --tls-self-signed >"$LOG_DIR/transport.kinesd.log" 2>&1 &
PID=$!
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/healthcheck" >/dev/null 2>&1 && break
    sleep 0.1
done
"$KBENCH" --host 127.0.0.1 --port "$PORT" --stream transport --mode create --shards 4 >/dev/null

# the signed request: body and headers for h2load
python3 - "$PORT" "$DIR" <<'EOF'
import base64, json, sys
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
port, d = sys.argv[1], sys.argv[2]
body = json.dumps({"StreamName": "transport", "PartitionKey": "pk",
                   "Data": base64.b64encode(b"x" * 100).decode()}).encode()
open(f"{d}/body", "wb").write(body)
for scheme in ("http", "https"):
    req = AWSRequest(method="POST", url=f"{scheme}://127.0.0.1:{port}/", data=body,
                     headers={"Content-Type": "application/x-amz-json-1.1",
                              "X-Amz-Target": "Kinesis_20131202.PutRecord"})
    SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), "kinesis",
              "us-east-1").add_auth(req)
    with open(f"{d}/headers.{scheme}", "w") as f:
        for k, v in req.headers.items():
            if k.lower() not in ("content-length", "host"):
                f.write(f"{k}: {v}\n")
EOF

# run NAME SCHEME H2LOAD-ARGS...: one h2load run; prints and records its req/s
declare -A RPS
STATUS=0
run() {
    local name=$1 scheme=$2 out
    shift 2
    local hdr=()
    while IFS= read -r line; do hdr+=(-H "$line"); done <"$DIR/headers.$scheme"
    out="$LOG_DIR/transport.$name.out"
    h2load -D "$SECS" -d "$DIR/body" "${hdr[@]}" "$@" "$scheme://127.0.0.1:$PORT/" >"$out" 2>&1 || true
    local rps ok total
    rps=$(awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($(i) ~ /^req\/s/) { v = $(i - 1); gsub(",", "", v); print v } }' "$out")
    ok=$(awk '/^requests:/ { print $8 }' "$out")
    total=$(awk '/^status codes:/ { print $3 }' "$out")
    RPS[$name]=${rps:-0}
    if [[ ${ok:-0} == 0 ]]; then
        echo "transport.sh: $name: no request succeeded (see $out)" >&2
        RPS[$name]=0
        STATUS=1
    fi
    echo "RESULT mode=transport-$name requests_per_s=${rps:-0} succeeded=${ok:-0} status_2xx=${total:-0}"
}

echo
echo "=== transport: PutRecord 100 B through h2load, ${SECS} s each, kinesd durable, one port ==="
run h1-16 http --h1 -c 16 -m 1
run h2c-1x64 http -c 1 -m 64
run https-h1-16 https --h1 -c 16 -m 1
run h2-tls-1x64 https -c 1 -m 64

pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.0f%%", 100 * a / b; else print "n/a" }'; }
kb=""
if [[ -n ${KBENCH_PUTRECORD_OUT:-} && -f $KBENCH_PUTRECORD_OUT ]]; then
    kb=$(awk '$1 == "RESULT" { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "requests_per_s") v = kv[2] } } END { print v }' "$KBENCH_PUTRECORD_OUT")
fi
printf "%-44s %11s  %s\n" "PutRecord 100 B" "req/s" "compared with"
printf '%.0s-' $(seq 90)
echo
[[ -n $kb ]] && printf "%-44s %11s  %s\n" "kbench HTTP/1.1 16 conn (putrecord mode)" "$kb" ""
printf "%-44s %11s  %s\n" "h2load HTTP/1.1 16 conn" "${RPS[h1-16]}" ""
printf "%-44s %11s  %s of h2load HTTP/1.1 16 conn (target >=100%%)\n" "h2load h2c 1 conn x 64 streams" \
    "${RPS[h2c-1x64]}" "$(pct "${RPS[h2c-1x64]}" "${RPS[h1-16]}")"
printf "%-44s %11s  %s of cleartext (target >=85%%)\n" "h2load HTTPS HTTP/1.1 16 conn" "${RPS[https-h1-16]}" \
    "$(pct "${RPS[https-h1-16]}" "${RPS[h1-16]}")"
printf "%-44s %11s  %s of h2c (target >=85%%)\n" "h2load h2 over TLS 1 conn x 64 streams" "${RPS[h2-tls-1x64]}" \
    "$(pct "${RPS[h2-tls-1x64]}" "${RPS[h2c-1x64]}")"
echo "raw h2load output: $LOG_DIR/transport.*.out"
exit $STATUS
