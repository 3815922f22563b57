#!/usr/bin/env bash
# The transport modes of the benchmark: three calls through h2load (Debian nghttp2-client)
# against one kinesd started with --tls-self-signed, over four transports, BENCH_SECONDS each,
# the whole set BENCH_TRANSPORT_REPEAT times (default 3: the machine may be shared, so each
# figure is the range of its runs, low-high, and shares are those of the medians):
#   calls   PutRecord of 100 B (one partition key, a 4-shard stream); PutRecords of
#           BENCH_TRANSPORT_BATCH (default 500) records of 100 B (~90 KB bodies, ~50 KB answers);
#           GetRecords of 100 records of 100 B (one TRIM_HORIZON iterator read again and again:
#           the same ~20 KB answer each time)
#   h1 16 conn          HTTP/1.1 cleartext, 16 keep-alive connections, one request each at a time
#   h2c 1 conn x 64     HTTP/2 prior knowledge, one connection, 64 concurrent streams
#   https h1 16 conn    HTTP/1.1 over TLS, 16 connections
#   h2 tls 1 conn x 64  HTTP/2 over TLS (ALPN h2), one connection, 64 streams
# The load generator gets a core of its own: kinesd runs on every core but the last, h2load on
# the last (with one core, both share it). On shared cores h2load's own TLS work (its CPU per
# request doubles over TLS) took cycles from kinesd, so the TLS share measured the client as much
# as the server; this way each figure is kinesd's throughput on the cores it has. Before each run
# the script waits until kinesd has flushed what the previous runs wrote (kinesd_unflushed_bytes
# 0), and every other round runs the transports in reverse order, so no transport always pays
# for the one before it (the flusher's catching up counts in kinesd's CPU).
# Requests are signed once per round (a signature stays valid for minutes; kinesd runs without
# --auth here anyway). Each run also counts the CPU time (user + system, /proc) of kinesd and of
# h2load per request: h2load shares the cores, so over TLS its own record crypto lowers the
# throughput of both; kinesd's CPU per request over TLS against cleartext is the server's own
# cost of TLS. Prints RESULT lines and a table: each figure with both CPU figures (medians), h2c
# as a share of the 16-connection HTTP/1.1 one, and TLS as a share of the same transport in
# cleartext, beside kinesd's CPU per request over TLS as a multiple of cleartext's. When
# run.sh's putrecord mode ran before (KBENCH_PUTRECORD_OUT), its kbench figure is shown too
# (kbench speaks cleartext HTTP/1.1 only).
#
# Usage: tools/bench/transport.sh   (run.sh calls it for BENCH_MODES containing "transport";
#        BENCH_TRANSPORT_CALLS="putrecord putrecords getrecords" chooses the calls)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
SECS=${BENCH_SECONDS:-8}
REPEAT=${BENCH_TRANSPORT_REPEAT:-3}
CALLS=${BENCH_TRANSPORT_CALLS:-putrecord putrecords getrecords}
BATCH=${BENCH_TRANSPORT_BATCH:-500}
KINESD=${KINESD_BIN:-build/kinesd}
LOG_DIR=${BENCH_LOG_DIR:-build/bench}
KBENCH=build/kbench
mkdir -p "$LOG_DIR"
command -v h2load >/dev/null || { echo "transport.sh: h2load not installed (nghttp2-client)" >&2; exit 1; }
[[ -x $KBENCH ]] || make --no-print-directory build/kbench
for call in $CALLS; do
    [[ $call == putrecord || $call == putrecords || $call == getrecords ]] ||
        { echo "transport.sh: unknown call '$call'" >&2; exit 2; }
done

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

NCPU=$(nproc)
if ((NCPU > 1)); then
    SERVER_CPUS=(taskset -c "0-$((NCPU - 2))")
    LOAD_CPUS=(taskset -c "$((NCPU - 1))")
else
    SERVER_CPUS=()
    LOAD_CPUS=()
fi
PORT=$("$KBENCH" --mode freeport)
"${SERVER_CPUS[@]}" "$KINESD" --host 127.0.0.1 --port "$PORT" --data-dir "$DIR/data" --create-stream-ms 0 --log-level warn \
    --no-limits --tls-self-signed >"$LOG_DIR/transport.kinesd.log" 2>&1 &
PID=$!
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/healthcheck" >/dev/null 2>&1 && break
    sleep 0.1
done
"$KBENCH" --host 127.0.0.1 --port "$PORT" --stream transport --mode create --shards 4 >/dev/null
"$KBENCH" --host 127.0.0.1 --port "$PORT" --stream transport-read --mode create --shards 1 >/dev/null

# sign: every call's signed request for h2load ($DIR/CALL.body, $DIR/CALL.headers.{http,https});
# the first time it also fills the stream that GetRecords reads
sign() {
    python3 - "$PORT" "$DIR" "$BATCH" <<'EOF'
import base64, json, sys, urllib.request
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
port, d = sys.argv[1], sys.argv[2]
creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")

def signed(scheme, target, body):
    req = AWSRequest(method="POST", url=f"{scheme}://127.0.0.1:{port}/", data=body,
                     headers={"Content-Type": "application/x-amz-json-1.1",
                              "X-Amz-Target": "Kinesis_20131202." + target})
    SigV4Auth(creds, "kinesis", "us-east-1").add_auth(req)
    return req

def call(target, payload):
    body = json.dumps(payload).encode()
    req = signed("http", target, body)
    r = urllib.request.Request(req.url, data=body, headers=dict(req.headers.items()), method="POST")
    with urllib.request.urlopen(r, timeout=30) as resp:
        return json.loads(resp.read())

data = base64.b64encode(b"x" * 100).decode()
records = [{"PartitionKey": f"pk{i}", "Data": data} for i in range(100)]
batch = [{"PartitionKey": f"pk{i}", "Data": data} for i in range(int(sys.argv[3]))]
shard = call("ListShards", {"StreamName": "transport-read"})["Shards"][0]["ShardId"]
it = call("GetShardIterator", {"StreamName": "transport-read", "ShardId": shard,
                               "ShardIteratorType": "TRIM_HORIZON"})["ShardIterator"]
if not call("GetRecords", {"ShardIterator": it, "Limit": 1})["Records"]:
    call("PutRecords", {"StreamName": "transport-read", "Records": records})
calls = {
    "putrecord": ("PutRecord", {"StreamName": "transport", "PartitionKey": "pk", "Data": data}),
    "putrecords": ("PutRecords", {"StreamName": "transport", "Records": batch}),
    "getrecords": ("GetRecords", {"ShardIterator": it, "Limit": 100}),
}
for name, (target, payload) in calls.items():
    body = json.dumps(payload).encode()
    open(f"{d}/{name}.body", "wb").write(body)
    for scheme in ("http", "https"):
        with open(f"{d}/{name}.headers.{scheme}", "w") as f:
            for k, v in signed(scheme, target, body).headers.items():
                if k.lower() not in ("content-length", "host"):
                    f.write(f"{k}: {v}\n")
EOF
}

# cpu_ticks PID: the process's user + system CPU so far, in clock ticks (all its threads)
TICK=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# us_per CPU-TICKS REQUESTS: microseconds of CPU per request
us_per() { awk -v t="$1" -v n="$2" -v hz="$TICK" 'BEGIN { if (n + 0 > 0) printf "%.1f", t * 1e6 / hz / n; else print 0 }'; }

# run CALL NAME SCHEME H2LOAD-ARGS...: one h2load run; adds its req/s to RPS[CALL.NAME], and
# the CPU per request of kinesd and of h2load (the load generator shares the cores) to
# SRV[CALL.NAME] and GEN[CALL.NAME]
# settle: wait (at most 60 s) until kinesd has flushed every record written so far
settle() {
    local i v
    for i in $(seq 600); do
        v=$(curl -s --max-time 2 "http://127.0.0.1:$PORT/metrics" 2>/dev/null |
            awk '$1 == "kinesd_unflushed_bytes" { print $2 }')
        [[ -n $v && $v != 0 ]] || return 0
        sleep 0.1
    done
}

declare -A RPS SRV GEN
STATUS=0
run() {
    local call=$1 name=$2 scheme=$3 out
    shift 3
    local hdr=()
    while IFS= read -r line; do hdr+=(-H "$line"); done <"$DIR/$call.headers.$scheme"
    out="$LOG_DIR/transport.$call.$name.out"
    local cpu0 cpu1 gen
    settle
    cpu0=$(cpu_ticks "$PID")
    # the subshell's "times" prints its children's CPU (h2load's) on its second line
    gen=$( ("${LOAD_CPUS[@]}" h2load -D "$SECS" -d "$DIR/$call.body" "${hdr[@]}" "$@" "$scheme://127.0.0.1:$PORT/" >"$out" 2>&1 || true
        times) | awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, ms, /[ms]/); t += ms[1] * 60 + ms[2] } print t }')
    cpu1=$(cpu_ticks "$PID")
    local rps ok total
    rps=$(awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($(i) ~ /^req\/s/) { v = $(i - 1); gsub(",", "", v); print v } }' "$out")
    ok=$(awk '/^requests:/ { print $8 }' "$out")
    total=$(awk '/^status codes:/ { print $3 }' "$out")
    if [[ ${ok:-0} == 0 || ${total:-0} == 0 ]]; then
        echo "transport.sh: $call $name: no request succeeded (see $out)" >&2
        rps=0
        STATUS=1
    fi
    local srv_us gen_us
    srv_us=$(us_per $((cpu1 - cpu0)) "${ok:-0}")
    gen_us=$(us_per "$(awk -v s="${gen:-0}" -v hz="$TICK" 'BEGIN { print s * hz }')" "${ok:-0}")
    RPS[$call.$name]="${RPS[$call.$name]:-} ${rps:-0}"
    SRV[$call.$name]="${SRV[$call.$name]:-} $srv_us"
    GEN[$call.$name]="${GEN[$call.$name]:-} $gen_us"
    echo "RESULT mode=transport-$call-$name requests_per_s=${rps:-0} succeeded=${ok:-0} status_2xx=${total:-0}" \
        "server_cpu_us_per_req=$srv_us h2load_cpu_us_per_req=$gen_us"
}

echo
echo "=== transport: $CALLS through h2load, ${SECS} s each, $REPEAT rounds, kinesd durable, one port," \
    "kinesd on ${SERVER_CPUS[*]:-every core}, h2load on ${LOAD_CPUS[*]:-the same} ==="
for ((round = 1; round <= REPEAT; round++)); do
    sign
    for call in $CALLS; do
        transports=(h1-16 h2c-1x64 https-h1-16 h2-tls-1x64)
        ((round % 2)) || transports=(h2-tls-1x64 https-h1-16 h2c-1x64 h1-16)
        for t in "${transports[@]}"; do
            case $t in
                h1-16) run "$call" h1-16 http --h1 -c 16 -m 1 ;;
                h2c-1x64) run "$call" h2c-1x64 http -c 1 -m 64 ;;
                https-h1-16) run "$call" https-h1-16 https --h1 -c 16 -m 1 ;;
                h2-tls-1x64) run "$call" h2-tls-1x64 https -c 1 -m 64 ;;
            esac
        done
    done
done

# the figures of one call and transport: "low-high"; shares compare the medians
sorted() { tr ' ' '\n' <<<"$1" | awk 'NF' | sort -g; }
range() { sorted "$1" | awk '{ v[n++] = $1 } END { if (n) printf "%.0f-%.0f", v[0], v[n - 1]; else print "n/a" }'; }
median() { sorted "$1" | awk '{ v[n++] = $1 } END { if (!n) print 0; else if (n % 2) print v[(n - 1) / 2]; else print (v[n / 2 - 1] + v[n / 2]) / 2 }'; }
pct() { awk -v a="$(median "$1")" -v b="$(median "$2")" 'BEGIN { if (b + 0 > 0) printf "%.0f%%", 100 * a / b; else print "n/a" }'; }
kb=""
if [[ -n ${KBENCH_PUTRECORD_OUT:-} && -f $KBENCH_PUTRECORD_OUT ]]; then
    kb=$(awk '$1 == "RESULT" { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "requests_per_s") v = kv[2] } } END { print v }' "$KBENCH_PUTRECORD_OUT")
fi
# the CPU of one call and transport per request, median: "kinesd/h2load" in us
cpu() { printf "%s/%s" "$(median "${SRV[$1]}")" "$(median "${GEN[$1]}")"; }
# kinesd's CPU per request over TLS as a multiple of its cleartext figure
times_cpu() { awk -v a="$(median "${SRV[$1]}")" -v b="$(median "${SRV[$2]}")" 'BEGIN { if (b + 0 > 0) printf "%.2fx", a / b; else print "n/a" }'; }
echo
printf "%-44s %13s %15s  %s\n" "requests/s (range of $REPEAT runs)" "req/s" "CPU us/req" "medians compared"
printf "%-44s %13s %15s\n" "" "" "kinesd/h2load"
printf '%.0s-' $(seq 110)
echo
[[ -n $kb ]] && printf "%-44s %13s %15s  %s\n" "kbench putrecord HTTP/1.1 16 conn" "$kb" "" ""
for call in $CALLS; do
    printf "%-44s %13s %15s  %s\n" "$call HTTP/1.1 16 conn" "$(range "${RPS[$call.h1-16]}")" "$(cpu "$call.h1-16")" ""
    printf "%-44s %13s %15s  %s of HTTP/1.1 16 conn\n" "$call h2c 1 conn x 64 streams" \
        "$(range "${RPS[$call.h2c-1x64]}")" "$(cpu "$call.h2c-1x64")" "$(pct "${RPS[$call.h2c-1x64]}" "${RPS[$call.h1-16]}")"
    printf "%-44s %13s %15s  %s of cleartext (target >=85%%), kinesd CPU/req %s\n" "$call HTTPS HTTP/1.1 16 conn" \
        "$(range "${RPS[$call.https-h1-16]}")" "$(cpu "$call.https-h1-16")" \
        "$(pct "${RPS[$call.https-h1-16]}" "${RPS[$call.h1-16]}")" "$(times_cpu "$call.https-h1-16" "$call.h1-16")"
    printf "%-44s %13s %15s  %s of h2c (target >=85%%), kinesd CPU/req %s\n" "$call h2 over TLS 1 conn x 64 streams" \
        "$(range "${RPS[$call.h2-tls-1x64]}")" "$(cpu "$call.h2-tls-1x64")" \
        "$(pct "${RPS[$call.h2-tls-1x64]}" "${RPS[$call.h2c-1x64]}")" "$(times_cpu "$call.h2-tls-1x64" "$call.h2c-1x64")"
done
echo "raw h2load output (last round): $LOG_DIR/transport.*.out"
exit $STATUS
