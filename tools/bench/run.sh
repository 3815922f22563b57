#!/usr/bin/env bash
# Benchmark kinesd, kinesalite and kinesis-mock side by side with tools/bench/kbench.
#
# Usage: tools/bench/run.sh [--kinesd-only | --kinesalite-only] [-h]
#
# Environment:
#   BENCH_SERVERS   servers to run, in order (default "kinesd kinesalite kinesis-mock"); also
#                     kinesd-unsealed kinesd with --no-encryption-at-rest, putrecords and
#                                     getrecords only (the sealing mode compares the two fairly)
#                     kinesd-pg       one kinesd with --store on the PostgreSQL of KINESD_PG_URL
#                     kinesd-pg2      two kinesd front-ends on that PostgreSQL, the load split
#                                     between them (two kbench processes, half the connections
#                                     each; their figures summed)
#                   each PostgreSQL kind gets a fresh database (CREATE DATABASE bench_kinesd_pg..)
#                   and runs only putrecord, putrecords and getrecords; per mode the table shows
#                   PostgreSQL's CPU (utime+stime of the postmaster and its children, from /proc,
#                   as a share of wall time) and commits/s (pg_stat_database.xact_commit).
#                   Needs KINESD_PG_URL, KINESD_PG_DIR (the cluster's directory, its data/
#                   holds postmaster.pid) and psql: tools/with-postgres.sh provides them, and
#                   `make bench-pg` runs BENCH_SERVERS="kinesd kinesd-pg kinesd-pg2" under it.
#   BENCH_MODES     modes to run (default: all of them, in this order)
#                     ceiling         kbench against its own built-in trivial server, for
#                                     every workload selected below: the load generator's ceiling
#                     putrecord       PutRecord, 16 connections, 100 B (after the disk's sync latency)
#                     putrecord-h2    PutRecord over one HTTP/2 (h2c) connection with 64 concurrent
#                                     streams, 100 B, by h2load (Debian nghttp2-client); a server
#                                     that does not speak h2c shows n/a
#                     putrecords      PutRecords 500 x 100 B, 4 connections
#                     getrecords      GetRecords Limit 10000, one connection per shard
#                     putrecords-kms  kinesd only: putrecords on a second stream, KMS-encrypted
#                                     (StartStreamEncryption with alias/aws/kinesis of the
#                                     built-in KMS); the table shows it as % of putrecords
#                     getrecords-kms  kinesd only: getrecords on that stream, as % of getrecords
#                     putrecords-1k   PutRecords 500 x 1 KiB, MB/s (after the disk's bandwidth)
#                     putrecords-25k  PutRecords 25 x 25 KiB, MB/s
#                     checkpoint      PutRecord, 16 connections, BENCH_CKPT_RECORD bytes for
#                                     BENCH_CKPT_SECONDS: long enough to cross several of kinesd's
#                                     write-ahead-log checkpoints (every 32 MiB); p99 and max
#                     transport       kinesd only, through h2load (tools/bench/transport.sh):
#                                     PutRecord over one HTTP/2 connection with 64 streams vs
#                                     16 HTTP/1.1 connections, and TLS vs cleartext for both
#                     fanout          every server with SubscribeToShard (kinesalite has none):
#                                     kbench's fan-out mode, 4 consumers subscribed (HTTP/1.1) to
#                                     each of 4 shards of a new stream while one connection sends
#                                     PutRecords 100 x 100 B: put-to-event p50/p99, delivered
#                                     records/s, every record delivered to every consumer in order
#                     scrape          kinesd only: PutRecord (16 connections) and PutRecords
#                                     (500 x 100 B) without and with a GET /metrics every second
#                                     (enhanced monitoring ALL on the stream, so shard-level
#                                     series are counted and written too), BENCH_SCRAPE_ROUNDS
#                                     rounds of each (the order alternating): both figures and
#                                     their ratio, and kinesd's CPU time per record both ways
#                     sealing         kinesd only: what sealing records at rest costs: two fresh
#                                     kinesd, one sealing (the default) and one with
#                                     --no-encryption-at-rest, BENCH_SCRAPE_ROUNDS rounds in
#                                     alternating order, each a putrecords and then a getrecords
#                                     (--no-fill: what is stored) on each: records/s both ways,
#                                     their ratio, and kinesd's CPU time per record both ways
#                     auth            kinesd only: PutRecords (500 x 100 B) with every request
#                                     signed (SigV4, kbench --sign) against two fresh kinesd, one
#                                     with --auth (verifying each signature) and one without,
#                                     BENCH_SCRAPE_ROUNDS rounds alternating: records/s both ways,
#                                     their ratio, and kinesd's CPU time per record both ways
#   BENCH_SECONDS   seconds per measured mode (default 8)
#   BENCH_SCRAPE_ROUNDS  rounds of the scrape, sealing and auth modes (default 6)
#   BENCH_SCRAPE_COST_N  scrapes in a row that measure one scrape's CPU (default 200)
#   BENCH_CKPT_SECONDS  seconds of the checkpoint mode (default 20)
#   BENCH_CKPT_RECORD   record size of the checkpoint mode (default 1024)
#   BENCH_DISK_MIB  MiB written to time the disk's sequential bandwidth (default 256)
#   BENCH_SHARDS    shards in the benchmark stream (default 4)
#   BENCH_GET_FILL  if set, getrecords first puts this many records per shard (default: read
#                   back what the put modes wrote; 25000 per shard when no put mode ran before)
#   KINESD_BIN      server binary (default build/kinesd)
#   KINESALITE_CLI  kinesalite cli.js (default build/npm/node_modules/kinesalite/cli.js)
#   KINESIS_MOCK_JS kinesis-mock's main.js (default build/npm/node_modules/kinesis-local/main.js)
#                   both installed by tools/install-npm.sh when missing
#   BENCH_LOG_DIR   where server logs and raw kbench output go (default build/bench)
#
# kinesd runs durable (no --no-sync) with --no-limits; kinesalite and kinesis-mock keep
# everything in memory. Each server is started on a free loopback port, gets one stream, runs
# every selected mode, and is stopped before the next starts, so no two servers share the
# cores. Before each mode kinesd is let finish storing what the mode before wrote (its
# unflushed bytes back to 0), so a figure does not depend on the modes run before it. During each mode kbench samples the server's RssAnon every 100 ms. The table at the
# end has the absolute figures and the ratios kinesd/kinesalite and kinesd/kinesis-mock.
# Servers started here are stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

DEFAULT_SERVERS="kinesd kinesalite kinesis-mock"
ALL_SERVERS="$DEFAULT_SERVERS kinesd-unsealed kinesd-pg kinesd-pg2"
PG_MODES="putrecord putrecords getrecords"
UNSEALED_MODES="putrecords getrecords"
ALL_MODES="ceiling putrecord putrecord-h2 putrecords getrecords putrecords-kms getrecords-kms putrecords-1k putrecords-25k checkpoint transport fanout scrape sealing auth"
SERVERS=${BENCH_SERVERS:-$DEFAULT_SERVERS}
MODES=${BENCH_MODES:-$ALL_MODES}
SECS=${BENCH_SECONDS:-8}
CKPT_SECS=${BENCH_CKPT_SECONDS:-20}
CKPT_RECORD=${BENCH_CKPT_RECORD:-1024}
DISK_MIB=${BENCH_DISK_MIB:-256}
SHARDS=${BENCH_SHARDS:-4}
SCRAPE_ROUNDS=${BENCH_SCRAPE_ROUNDS:-6}
SCRAPE_COST_N=${BENCH_SCRAPE_COST_N:-200}
KINESD=${KINESD_BIN:-build/kinesd}
KINESALITE_CLI=${KINESALITE_CLI:-build/npm/node_modules/kinesalite/cli.js}
KINESIS_MOCK_JS=${KINESIS_MOCK_JS:-build/npm/node_modules/kinesis-local/main.js}
LOG_DIR=${BENCH_LOG_DIR:-build/bench}
KBENCH=build/kbench
STREAM=bench
FAILED=0

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

for arg in "$@"; do
    case "$arg" in
        --kinesd-only) SERVERS=kinesd ;;
        --kinesalite-only) SERVERS=kinesalite ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
    esac
done

# word lists: every word must be known
in_list() { # WORD LIST
    local w
    for w in $2; do [[ $w == "$1" ]] && return 0; done
    return 1
}
for s in $SERVERS; do
    in_list "$s" "$ALL_SERVERS" || { echo "run.sh: unknown server '$s' (known: $ALL_SERVERS)" >&2; exit 2; }
done
for m in $MODES; do
    in_list "$m" "$ALL_MODES" || { echo "run.sh: unknown mode '$m' (known: $ALL_MODES)" >&2; exit 2; }
done
has_mode() { in_list "$1" "$MODES"; }
has_server() { in_list "$1" "$SERVERS"; }
num_re='^[0-9]+([.][0-9]+)?$'
if ! [[ $SECS =~ $num_re && $CKPT_SECS =~ $num_re ]] || ! [[ $SHARDS =~ ^[0-9]+$ && $SCRAPE_ROUNDS =~ ^[1-9][0-9]*$ && $SCRAPE_COST_N =~ ^[1-9][0-9]*$ ]] ||
    ! [[ $CKPT_RECORD =~ ^[0-9]+$ && $DISK_MIB =~ ^[0-9]+$ ]]; then
    echo "run.sh: BENCH_SECONDS, BENCH_CKPT_SECONDS, BENCH_CKPT_RECORD, BENCH_DISK_MIB," \
        "BENCH_SHARDS, BENCH_SCRAPE_ROUNDS and BENCH_SCRAPE_COST_N must be numbers" >&2
    exit 2
fi
if [[ -n ${BENCH_GET_FILL:-} ]] && ! [[ $BENCH_GET_FILL =~ ^[0-9]+$ ]]; then
    echo "run.sh: BENCH_GET_FILL must be a whole number" >&2
    exit 2
fi
# upper bound for one kbench invocation (it stops by itself; this is a backstop)
KB_TIMEOUT=$(awk -v s="$SECS" -v c="$CKPT_SECS" 'BEGIN { m = s > c ? s : c; printf "%d", m + 150 }')

# ---------------------------------------------------------------- cleanup --
SERVER_PIDS=()
DATA_DIRS=()
cleanup() {
    local pid dir
    for pid in "${SERVER_PIDS[@]}"; do # the list is expanded before stop_server edits it
        stop_server "$pid"
    done
    for dir in "${DATA_DIRS[@]}"; do
        [[ -n $dir && -d $dir ]] && rm -rf -- "$dir"
    done
    DATA_DIRS=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

stop_server() {
    local pid=$1 keep=() p _
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    for p in "${SERVER_PIDS[@]}"; do
        [[ $p == "$pid" ]] || keep+=("$p")
    done
    SERVER_PIDS=("${keep[@]+"${keep[@]}"}")
}

# ------------------------------------------------------------------ build --
mkdir -p build "$LOG_DIR"
rm -f "$LOG_DIR"/*.out
if [[ ! -x $KBENCH || tools/bench/kbench.c -nt $KBENCH ]]; then
    echo "run.sh: building $KBENCH with make"
    make --no-print-directory build/kbench
fi

# -------------------------------------------------------- prerequisites --
drop_server() { # NAME REASON
    echo "run.sh: skipping $1: $2" >&2
    local rest="" s
    for s in $SERVERS; do [[ $s == "$1" ]] || rest="$rest $s"; done
    SERVERS=$rest
    FAILED=1
}
if { has_server kinesd || has_server kinesd-unsealed || has_server kinesd-pg || has_server kinesd-pg2; } && [[ ! -x $KINESD ]]; then
    echo "run.sh: $KINESD not found (or not executable): build it first ('make') or set KINESD_BIN" >&2
    exit 2
fi
if has_server kinesalite || has_server kinesis-mock; then
    if [[ ! -f $KINESALITE_CLI && $KINESALITE_CLI == build/npm/* ]] ||
        [[ ! -f $KINESIS_MOCK_JS && $KINESIS_MOCK_JS == build/npm/* ]]; then
        echo "run.sh: installing the npm packages (tools/install-npm.sh)"
        tools/install-npm.sh || echo "run.sh: tools/install-npm.sh failed" >&2
    fi
    if ! command -v node >/dev/null 2>&1; then
        has_server kinesalite && drop_server kinesalite "node not found"
        has_server kinesis-mock && drop_server kinesis-mock "node not found"
    fi
    if has_server kinesalite && [[ ! -f $KINESALITE_CLI ]]; then
        drop_server kinesalite "$KINESALITE_CLI not found"
    fi
    if has_server kinesis-mock && [[ ! -f $KINESIS_MOCK_JS ]]; then
        drop_server kinesis-mock "$KINESIS_MOCK_JS not found"
    fi
fi
for s in kinesd-pg kinesd-pg2; do
    has_server "$s" || continue
    if [[ -z ${KINESD_PG_URL:-} || -z ${KINESD_PG_DIR:-} || ! -f ${KINESD_PG_DIR:-}/data/postmaster.pid ]]; then
        drop_server "$s" "KINESD_PG_URL/KINESD_PG_DIR not set (run under tools/with-postgres.sh, or make bench-pg)"
    elif ! command -v psql >/dev/null 2>&1; then
        drop_server "$s" "psql not found (Debian postgresql-client)"
    elif [[ $KINESD_PG_URL != *"/postgres?"* ]]; then
        drop_server "$s" "KINESD_PG_URL must name the database postgres as /postgres?... (it is replaced by a fresh one)"
    fi
done
if [[ -z ${SERVERS// /} ]] && ! has_mode ceiling; then
    echo "run.sh: nothing to benchmark" >&2
    exit 2
fi

# ---------------------------------------------------------------- helpers --
# kb OUTFILE ARGS...: run kbench, show and keep its output
kb() {
    local out=$1
    shift
    # pipefail: the pipeline fails when kbench does
    "${KB_CPUS[@]}" timeout --signal=TERM "$KB_TIMEOUT" "$KBENCH" "$@" 2>&1 | tee -a "$out"
}
KB_CPUS=() # a taskset prefix for kbench while a mode pins the load generator (scrape)

# pin_apart PID: kinesd (every thread of PID) on every core but the last, kbench and the
# scraper (KB_CPUS) on the last; a no-op with one core. unpin PID: every core again.
pin_apart() {
    local n
    n=$(nproc)
    ((n > 1)) || return 0
    taskset -a -p -c "0-$((n - 2))" "$1" >/dev/null
    KB_CPUS=(taskset -c "$((n - 1))")
}
unpin() {
    taskset -a -p -c "0-$(($(nproc) - 1))" "$1" >/dev/null
    KB_CPUS=()
}

# wait_port PID PORT NAME LOG SECONDS: wait until PORT accepts connections
wait_port() {
    local pid=$1 port=$2 name=$3 log=$4 secs=$5 i
    for ((i = 0; i < secs * 20; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "run.sh: $name exited during startup; last log lines:" >&2
            tail -n 20 "$log" >&2 || true
            return 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "run.sh: $name did not listen on port $port within $secs s" >&2
    return 1
}

# workload MODE: kbench arguments of a load mode (shared by the servers and the ceiling)
workload() {
    case "$1" in
        putrecord) echo "--mode putrecord --connections 16 --record-size 100 --seconds $SECS" ;;
        putrecords) echo "--mode putrecords --connections 4 --batch 500 --record-size 100 --seconds $SECS" ;;
        getrecords) echo "--mode getrecords --limit 10000 --record-size 100 --seconds $SECS" ;;
        putrecords-kms) echo "$(workload putrecords) --stream $STREAM-kms" ;;
        getrecords-kms) echo "$(workload getrecords) --stream $STREAM-kms" ;;
        putrecords-1k) echo "--mode putrecords --connections 4 --batch 500 --record-size 1024 --seconds $SECS" ;;
        putrecords-25k) echo "--mode putrecords --connections 4 --batch 25 --record-size 25600 --seconds $SECS" ;;
        checkpoint) echo "--mode putrecord --connections 16 --record-size $CKPT_RECORD --seconds $CKPT_SECS" ;;
        fanout) echo "--mode fanout --stream $STREAM-fanout --shards 4 --consumers 4 --connections 1 --batch 100 --record-size 100 --seconds $SECS" ;;
    esac
}

# sample_anon PID OUT: peak RssAnon (kB) of PID every 100 ms into OUT until killed
sample_anon() {
    local pid=$1 out=$2 peak=0 kb
    while kill -0 "$pid" 2>/dev/null; do
        kb=$(awk '$1 == "RssAnon:" { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
        if [[ -n $kb ]] && ((kb > peak)); then
            peak=$kb
            echo "$peak" >"$out"
        fi
        sleep 0.1
    done
}

# h2_putrecord OUT PORT PID: PutRecord over one h2c connection, 64 streams, for SECS; a RESULT
# line in OUT in kbench's format. h2load sends the same request each time (one record, one
# partition key), with the same unverified SigV4 header as kbench.
h2_putrecord() {
    local out=$1 port=$2 pid=$3 body raw peak sampler data
    body=$(mktemp)
    raw=$(mktemp)
    peak=$(mktemp)
    data=$(head -c 100 /dev/urandom | base64 -w0)
    printf '{"StreamName":"%s","PartitionKey":"pk-h2load-00001","Data":"%s"}' "$STREAM" "$data" >"$body"
    sample_anon "$pid" "$peak" &
    sampler=$!
    timeout --signal=TERM "$KB_TIMEOUT" h2load -c 1 -m 64 -D "$SECS" -d "$body" \
        -H 'content-type: application/x-amz-json-1.1' -H 'x-amz-target: Kinesis_20131202.PutRecord' \
        -H 'x-amz-date: 20260101T000000Z' \
        -H 'authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0000000000000000000000000000000000000000000000000000000000000000' \
        "http://127.0.0.1:$port/" >"$raw" 2>&1 || true
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    cat "$raw" >>"$out"
    awk -v secs="$SECS" -v anon="$(cat "$peak")" '
        /^finished in/ { d = $3; sub(/s,$/, "", d) }
        /^requests:/ { for (i = 2; i <= NF; i++) { if ($(i + 1) ~ /^succeeded/) ok = $i
                                                   if ($(i + 1) ~ /^(failed|errored|timeout)/) bad += $i } }
        /^status codes:/ { s2 = $3 }
        /^time for request:/ { mean = $6; max = $5 }
        function ms(x) { if (x ~ /us$/) return substr(x, 1, length(x) - 2) / 1000
                         if (x ~ /ms$/) return substr(x, 1, length(x) - 2) + 0
                         if (x ~ /s$/) return substr(x, 1, length(x) - 1) * 1000
                         return "" }
        END {
            if (d == "" || d + 0 <= 0) d = secs
            ok += 0
            if (ok == 0) { print "RESULT mode=putrecord-h2 succeeded=0 errors=0"; exit }
            printf "RESULT mode=putrecord-h2 connections=1 streams=64 duration_s=%s requests=%d", d, ok + bad
            printf " requests_per_s=%.1f mean_ms=%s max_ms=%s errors=%d", ok / d, ms(mean), ms(max), bad
            printf " peak_rss_anon_mb=%s\n", anon == "" ? "na" : sprintf("%.1f", anon / 1024)
        }' "$raw" | tee -a "$out"
    rm -f "$body" "$raw" "$peak"
    ! grep -q '^RESULT mode=putrecord-h2 succeeded=0' "$out"
}

# ------------------------------------------------------------ PostgreSQL --
# pg_ticks: CPU clock ticks (utime+stime) of the PostgreSQL cluster so far: the postmaster's own
# and its reaped children's, plus every live child's (the backends serving kinesd)
pg_ticks() {
    local pm
    pm=$(head -n 1 "$KINESD_PG_DIR/data/postmaster.pid")
    # the comm field may hold spaces: fields are counted after its closing parenthesis
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v pm="$pm" '
        { pid = $1; line = $0; sub(/^.*\) /, "", line); split(line, f, " ")
          if (pid == pm) t += f[12] + f[13] + f[14] + f[15]
          else if (f[2] == pm) t += f[12] + f[13] }
        END { printf "%d\n", t }'
}

# pg_commits DB: committed transactions of DB so far (backends flush their counts within ~1 s)
pg_commits() {
    psql "$KINESD_PG_URL" -XAtqc "SELECT xact_commit FROM pg_stat_database WHERE datname = '$1'"
}

# pg_fresh_db NAME: drop and create database NAME; its URL in PG_DB_URL
pg_fresh_db() {
    psql "$KINESD_PG_URL" -Xq -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" || return 1
    PG_DB_URL=${KINESD_PG_URL/\/postgres\?//$1?}
}

# merge_results MODE FILES...: one RESULT line for load split over several kbench processes:
# counts and rates summed, latencies and memory their maximum (not a merged percentile)
merge_results() {
    local mode=$1
    shift
    awk -v mode="$mode" -v n="$#" '
        $1 == "RESULT" { delete cur; for (i = 2; i <= NF; i++) { split($i, kv, "="); cur[kv[1]] = kv[2] }
                         for (k in cur) last[FILENAME, k] = cur[k]; keys_seen(cur) ; got[FILENAME] = 1 }
        function keys_seen(c,   k) { for (k in c) if (!(k in kseen)) { kseen[k] = 1; order[++nk] = k } }
        END {
            files = 0; for (f in got) files++
            if (files < n) { printf "RESULT mode=%s frontends=%d errors=0 missing=%d\n", mode, n, n - files; exit }
            line = "RESULT mode=" mode " frontends=" n
            for (j = 1; j <= nk; j++) {
                k = order[j]
                if (k == "mode") continue
                sum = 0; max = 0; numeric = 1
                for (f in got) { v = last[f, k]; if (v !~ /^[0-9.]+$/) numeric = 0
                                 sum += v; if (v + 0 > max + 0) max = v }
                if (!numeric) { for (f in got) { v = last[f, k]; break }; line = line " " k "=" v; continue }
                if (k ~ /(_per_s|^records|^requests|^bytes|errors|failed_records|^connections)$/ || k == "records" || k == "requests")
                    line = line " " k "=" sum
                else line = line " " k "=" max
            }
            print line
        }' "$@"
}

# halve ARGS...: the kbench arguments with --connections halved (at least 1)
halve() {
    local prev=""
    for a in "$@"; do
        if [[ $prev == --connections ]]; then a=$(((a + 1) / 2)); fi
        printf '%s\n' "$a"
        prev=$a
    done
}

# kms_stream PORT OUT: create STREAM-kms and encrypt it with the built-in KMS's alias/aws/kinesis
# (kinesd without --auth takes kbench's unverified SigV4 header); waits until it is ACTIVE
kms_stream() {
    kb "$2" --host 127.0.0.1 --port "$1" --stream "$STREAM-kms" --mode create --shards "$SHARDS" || return 1
    python3 - "$1" "$STREAM-kms" >>"$2" 2>&1 <<'EOF'
import http.client, json, sys, time
port, name = int(sys.argv[1]), sys.argv[2]
def call(op, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", "/", json.dumps(body), {
        "content-type": "application/x-amz-json-1.1", "x-amz-target": "Kinesis_20131202." + op,
        "x-amz-date": "20260101T000000Z",
        "authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/kinesis/aws4_request, "
                         "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "0" * 64})
    r = c.getresponse()
    return r.status, json.loads(r.read() or b"{}")
status, out = call("StartStreamEncryption", {"StreamName": name, "EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"})
if status != 200:
    sys.exit(f"StartStreamEncryption: {status} {out}")
for _ in range(600):
    s = call("DescribeStreamSummary", {"StreamName": name})[1].get("StreamDescriptionSummary", {})
    if s.get("StreamStatus") == "ACTIVE":
        print(f"stream {name}: EncryptionType {s.get('EncryptionType')} KeyId {s.get('KeyId')}")
        sys.exit(0 if s.get("EncryptionType") == "KMS" else 1)
    time.sleep(0.1)
sys.exit("the stream did not become ACTIVE")
EOF
}

# proc_cpu PID: the process's CPU time so far (utime+stime), in clock ticks
proc_cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# run_suite NAME PID PORT [DATA_DIR]: every selected mode; raw output in LOG_DIR/NAME.MODE.out.
# With SUITE_PORTS/SUITE_PIDS holding more than one front-end, each load mode runs one kbench
# per front-end at once with half the connections, and LOG_DIR/NAME.MODE.out gets their sum.
# With SUITE_DB set (a PostgreSQL kind), LOG_DIR/NAME.MODE.pg.out gets the database's CPU
# share and commits/s over the mode.
run_suite() {
    local name=$1 pid=$2 port=$3 disk_dir=${4:-} rc=0 m put_done=0 disk_bw_done=0 extra kms_ready=0 kms_put=0
    local common=(--host 127.0.0.1 --port "$port" --stream "$STREAM")
    echo
    echo "=== $name (pid $pid, port $port) ==="
    kb "$LOG_DIR/$name.create.out" "${common[@]}" --mode create --shards "$SHARDS" || return 1
    for m in $MODES; do
        [[ $m == ceiling || $m == transport ]] && continue
        # kinesd-unsealed is there to show what sealing at rest costs, no more
        [[ $name != kinesd-unsealed ]] || in_list "$m" "$UNSEALED_MODES" || continue
        if [[ $m == fanout && $name == kinesalite ]]; then
            echo "run.sh: kinesalite has no SubscribeToShard: skipping fanout"
            continue
        fi
        if [[ $m == *-kms ]]; then # the built-in KMS is kinesd's own
            [[ $name == kinesd ]] || { echo "run.sh: $name has no built-in KMS: skipping $m"; continue; }
            if [[ $kms_ready == 0 ]]; then
                kms_stream "$port" "$LOG_DIR/$name.kms-stream.out" ||
                    { echo "run.sh: $name: no KMS-encrypted stream (see $LOG_DIR/$name.kms-stream.out)" >&2; rc=1; continue; }
                kms_ready=1
            fi
        fi
        if [[ -n $SUITE_DB ]] && ! in_list "$m" "$PG_MODES"; then
            echo "run.sh: $name runs only $PG_MODES: skipping $m"
            continue
        fi
        extra=()
        settle "$port"
        # the disk's own figures, measured in kinesd's data directory right before the modes
        # bound by them: sync latency before PutRecord, sequential bandwidth before large records
        if [[ -n $disk_dir ]]; then
            case "$m" in
                putrecord | checkpoint)
                    kb "$LOG_DIR/disk.sync-$m.out" --mode disksync --dir "$disk_dir" || rc=1 ;;
                putrecords-1k | putrecords-25k)
                    if [[ $disk_bw_done == 0 ]]; then
                        kb "$LOG_DIR/disk.write.out" --mode diskwrite --mib "$DISK_MIB" --dir "$disk_dir" || rc=1
                        disk_bw_done=1
                    fi ;;
            esac
        fi
        if [[ $m == getrecords || $m == getrecords-kms ]]; then
            if [[ -n ${BENCH_GET_FILL:-} ]]; then
                extra=(--fill "$BENCH_GET_FILL")
            elif [[ $m == getrecords && $put_done == 1 ]] || [[ $m == getrecords-kms && $kms_put == 1 ]]; then
                extra=(--no-fill)
            else
                extra=(--fill 25000)
            fi
        fi
        [[ $m == putrecord || $m == putrecords ]] && put_done=1
        [[ $m == putrecords-kms ]] && kms_put=1
        if [[ $m == putrecord-h2 ]]; then
            if command -v h2load >/dev/null 2>&1; then
                h2_putrecord "$LOG_DIR/$name.$m.out" "$port" "$pid" ||
                    echo "run.sh: $name: no PutRecord over h2c succeeded (see $LOG_DIR/$name.$m.out)" >&2
            else
                echo "run.sh: h2load not found (Debian nghttp2-client): skipping putrecord-h2" >&2
            fi
            continue
        fi
        if [[ $m == scrape ]]; then
            if [[ $name == kinesd ]]; then
                scrape_compare "$name" "$pid" "$port" || rc=1
            else
                echo "run.sh: the scrape mode measures kinesd's /metrics: skipping it for $name"
            fi
            continue
        fi
        if [[ $m == sealing ]]; then
            if [[ $name == kinesd ]]; then
                seal_compare "$name" || rc=1
            else
                echo "run.sh: the sealing mode measures kinesd's encryption at rest: skipping it for $name"
            fi
            continue
        fi
        if [[ $m == auth ]]; then
            if [[ $name == kinesd ]]; then
                auth_compare "$name" || rc=1
            else
                echo "run.sh: the auth mode measures kinesd's SigV4 verification: skipping it for $name"
            fi
            continue
        fi
        if [[ $m == fanout ]]; then # a peer that loses or reorders events is a finding, not a failure
            # shellcheck disable=SC2046
            measure "$name" "$m" "${common[@]}" $(workload "$m") --pid "$pid" ||
                { echo "run.sh: $name: fan-out incomplete (see $LOG_DIR/$name.$m.out)" >&2; [[ $name != kinesd ]] || rc=1; }
            continue
        fi
        local cpu0
        cpu0=$(proc_cpu "$pid")
        # shellcheck disable=SC2046
        measure "$name" "$m" "${common[@]}" $(workload "$m") "${extra[@]+"${extra[@]}"}" --pid "$pid" || rc=1
        # the server's CPU time over the mode: per record it hardly depends on other load
        echo "RESULT mode=$m cpu_s=$(awk -v a="$cpu0" -v b="$(proc_cpu "$pid")" -v hz="$(getconf CLK_TCK)" \
            'BEGIN { printf "%.2f", (b - a) / hz }')" >"$LOG_DIR/$name.$m.cpu.out"
    done
    return "$rc"
}

# measure NAME MODE KBENCH-ARGS...: one load mode against the suite's front-end(s)
measure() {
    local name=$1 m=$2 out="$LOG_DIR/$1.$2.out" t0 c0 n0 t1 c1 n1 i rc=0 args parts=() pids=()
    shift 2
    if [[ -n $SUITE_DB ]]; then
        sleep 1.5 # let the backends flush their statistics of what came before
        c0=$(pg_commits "$SUITE_DB")
        t0=$(pg_ticks)
        n0=$(date +%s.%N)
    fi
    if ((${#SUITE_PORTS[@]} <= 1)); then
        kb "$out" "$@" || rc=1
    else
        mapfile -t args < <(halve "$@")
        # getrecords takes one connection per shard by default: half the shards' worth each
        [[ $m == getrecords ]] && args+=(--connections $(((SHARDS + 1) / 2)))
        for i in "${!SUITE_PORTS[@]}"; do
            parts+=("$LOG_DIR/$name-fe$((i + 1)).$m.out")
            # the later --port and --pid win
            timeout --signal=TERM "$KB_TIMEOUT" "$KBENCH" "${args[@]}" --port "${SUITE_PORTS[$i]}" \
                --pid "${SUITE_PIDS[$i]}" >"${parts[$i]}" 2>&1 &
            pids+=($!)
        done
        for i in "${!pids[@]}"; do
            wait "${pids[$i]}" || rc=1
            sed "s/^/[front-end $((i + 1))] /" "${parts[$i]}" | tee -a "$out"
        done
        merge_results "$m" "${parts[@]}" | tee -a "$out"
    fi
    if [[ -n $SUITE_DB ]]; then
        t1=$(pg_ticks)
        n1=$(date +%s.%N)
        sleep 1.5
        c1=$(pg_commits "$SUITE_DB")
        awk -v m="$m" -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" -v n0="$n0" -v n1="$n1" \
            -v c0="$c0" -v c1="$c1" 'BEGIN {
                w = n1 - n0; if (w <= 0) w = 1
                printf "RESULT mode=%s pg_wall_s=%.2f pg_cpu_s=%.2f pg_cpu_pct=%.0f commits=%d commits_per_s=%.0f\n",
                    m, w, (t1 - t0) / hz, 100 * (t1 - t0) / hz / w, c1 - c0, (c1 - c0) / w }' |
            tee "$LOG_DIR/$name.$m.pg.out"
    fi
    return "$rc"
}

# settle PORT: wait (at most 60 s) until kinesd has stored in its database everything it
# acknowledged (kinesd_unflushed_bytes 0), so that no mode pays for flushing what the one before
# it wrote; a server without that metric goes on at once
settle() {
    local i v
    for i in $(seq 600); do
        v=$(curl -s --max-time 2 "http://127.0.0.1:$1/metrics" 2>/dev/null |
            awk '$1 == "kinesd_unflushed_bytes" { print $2 }')
        [[ -n $v && $v != 0 ]] || return 0
        sleep 0.1
    done
}

# scraper PORT OUT: GET /metrics once a second until killed; one line per scrape into OUT:
# HTTP status, seconds the scrape took, bytes of the exposition
scraper() {
    while :; do
        curl -s -o /dev/null -w '%{http_code} %{time_total} %{size_download}\n' --max-time 5 \
            "http://127.0.0.1:$1/metrics" >>"$2" || echo "000 0 0" >>"$2"
        sleep 1
    done
}

# scrape_compare NAME PID PORT: PutRecord and PutRecords without and with a scrape every second,
# alternating, SCRAPE_ROUNDS rounds; RESULT lines in LOG_DIR/NAME.scrape-{off,on}-LOAD-ROUND.out,
# the scrapes' own lines in LOG_DIR/NAME.scrapes.txt
scrape_compare() {
    local name=$1 pid=$2 port=$3 load r on sides rc=0 sp
    local common=(--host 127.0.0.1 --port "$port" --stream "$STREAM")
    rm -f "$LOG_DIR/$name.scrapes.txt"
    # enhanced monitoring ALL: the shard-level series are counted and scraped too (any
    # credentials do without --auth; the signature is not checked)
    curl -s -o /dev/null -w 'EnableEnhancedMonitoring: HTTP %{http_code}\n' -X POST \
        -H 'content-type: application/x-amz-json-1.1' -H 'x-amz-target: Kinesis_20131202.EnableEnhancedMonitoring' \
        -H 'x-amz-date: 20260101T000000Z' \
        -H 'authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0000000000000000000000000000000000000000000000000000000000000000' \
        -d "{\"StreamName\":\"$STREAM\",\"ShardLevelMetrics\":[\"ALL\"]}" "http://127.0.0.1:$port/" || rc=1
    # the load generator and the scraper on a core of their own: on shared cores their CPU,
    # not the scrape's, moved kinesd's throughput between the arms
    pin_apart "$pid"
    for r in $(seq "$SCRAPE_ROUNDS"); do
        for load in putrecord putrecords; do
            # the order alternates between rounds, so that neither side always runs on the
            # larger database
            sides="off on"
            ((r % 2)) || sides="on off"
            for on in $sides; do
                settle "$port"
                sp=
                if [[ $on == on ]]; then
                    scraper "$port" "$LOG_DIR/$name.scrapes.txt" &
                    sp=$!
                    # the scraper stands for Prometheus: with the load generator
                    ((${#KB_CPUS[@]} == 0)) || taskset -p -c "${KB_CPUS[2]}" "$sp" >/dev/null
                fi
                local cpu0
                cpu0=$(proc_cpu "$pid")
                # shellcheck disable=SC2046
                measure "$name" "scrape-$on-$load-$r" "${common[@]}" $(workload "$load") --pid "$pid" || rc=1
                # kinesd's CPU time, the scrapes' included: per record it hardly depends on other load
                echo "RESULT mode=$load cpu_s=$(awk -v a="$cpu0" -v b="$(proc_cpu "$pid")" -v hz="$(getconf CLK_TCK)" \
                    'BEGIN { printf "%.2f", (b - a) / hz }')" >"$LOG_DIR/$name.scrape-$on-$load-$r.cpu.out"
                if [[ -n $sp ]]; then
                    kill "$sp" 2>/dev/null || true
                    wait "$sp" 2>/dev/null || true
                fi
            done
        done
    done
    unpin "$pid"
    # the cost of one scrape itself, measured alone: kinesd's CPU over SCRAPE_COST_N scrapes in a
    # row on the same data (the throughput ratios above move by a few per cent from run to run on
    # a shared machine; this figure does not, and bounds what a scrape a second can take)
    local cpu0 i
    cpu0=$(proc_cpu "$pid")
    for i in $(seq "$SCRAPE_COST_N"); do
        curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$port/metrics" || rc=1
    done
    echo "RESULT mode=scrape-cost scrapes=$SCRAPE_COST_N cpu_ms_per_scrape=$(awk -v a="$cpu0" \
        -v b="$(proc_cpu "$pid")" -v hz="$(getconf CLK_TCK)" -v n="$SCRAPE_COST_N" \
        'BEGIN { printf "%.3f", (b - a) * 1000 / hz / n }')" >"$LOG_DIR/$name.scrape-cost.out"
    return "$rc"
}

# auth_compare NAME: PutRecords signed for real against a fresh kinesd without --auth and one
# with it, alternating, SCRAPE_ROUNDS rounds; RESULT lines in LOG_DIR/NAME.auth-{off,on}-ROUND.out
# and the servers' CPU time in LOG_DIR/NAME.auth-{off,on}-ROUND.cpu.out
auth_compare() {
    local name=$1 rc=0 r on sides side_port side_pid cpu0
    local creds="$LOG_DIR/auth.credentials" key=AKIDKBENCHAUTH secret=kbench/auth+secret
    printf '[kbench]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$key" "$secret" >"$creds"
    chmod 600 "$creds"
    local off_port on_port off_pid on_pid
    off_port=$("$KBENCH" --mode freeport)
    start_kinesd "$off_port" "$LOG_DIR/$name.auth-off.log"
    off_pid=$START_PID
    SERVER_PIDS+=("$off_pid")
    on_port=$("$KBENCH" --mode freeport)
    start_kinesd "$on_port" "$LOG_DIR/$name.auth-on.log" --auth "$creds"
    on_pid=$START_PID
    SERVER_PIDS+=("$on_pid")
    wait_port "$off_pid" "$off_port" "$name (no --auth)" "$LOG_DIR/$name.auth-off.log" 10 || rc=1
    wait_port "$on_pid" "$on_port" "$name --auth" "$LOG_DIR/$name.auth-on.log" 10 || rc=1
    for side_port in "$off_port" "$on_port"; do
        kb "$LOG_DIR/$name.auth-create.out" --host 127.0.0.1 --port "$side_port" --stream "$STREAM" \
            --mode create --shards "$SHARDS" --sign "$key:$secret" || rc=1
    done
    if ((rc == 0)); then
        for r in $(seq "$SCRAPE_ROUNDS"); do
            sides="off on"
            ((r % 2)) || sides="on off"
            for on in $sides; do
                if [[ $on == on ]]; then side_port=$on_port side_pid=$on_pid; else side_port=$off_port side_pid=$off_pid; fi
                cpu0=$(proc_cpu "$side_pid")
                # shellcheck disable=SC2046
                measure "$name" "auth-$on-$r" --host 127.0.0.1 --port "$side_port" --stream "$STREAM" \
                    $(workload putrecords) --sign "$key:$secret" --pid "$side_pid" || rc=1
                echo "RESULT mode=putrecords cpu_s=$(awk -v a="$cpu0" -v b="$(proc_cpu "$side_pid")" \
                    -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / hz }')" \
                    >"$LOG_DIR/$name.auth-$on-$r.cpu.out"
            done
        done
    fi
    stop_server "$off_pid"
    stop_server "$on_pid"
    return "$rc"
}

# seal_compare NAME: putrecords and then getrecords (what is stored) against a fresh kinesd
# sealing records at rest and one with --no-encryption-at-rest, alternating, SCRAPE_ROUNDS
# rounds: both start empty and hold the same records at every step, so the figures differ by
# what sealing costs and nothing else. RESULT lines in LOG_DIR/NAME.seal-{on,off}-{put,get}-ROUND.out,
# the servers' CPU time in the matching .cpu.out
seal_compare() {
    local name=$1 rc=0 r on sides side_port side_pid cpu0 w
    local off_port on_port off_pid on_pid
    on_port=$("$KBENCH" --mode freeport)
    start_kinesd "$on_port" "$LOG_DIR/$name.seal-on.log"
    on_pid=$START_PID
    SERVER_PIDS+=("$on_pid")
    off_port=$("$KBENCH" --mode freeport)
    start_kinesd "$off_port" "$LOG_DIR/$name.seal-off.log" --no-encryption-at-rest
    off_pid=$START_PID
    SERVER_PIDS+=("$off_pid")
    wait_port "$on_pid" "$on_port" "$name (sealing)" "$LOG_DIR/$name.seal-on.log" 10 || rc=1
    wait_port "$off_pid" "$off_port" "$name --no-encryption-at-rest" "$LOG_DIR/$name.seal-off.log" 10 || rc=1
    for side_port in "$on_port" "$off_port"; do
        ((rc == 0)) || break
        kb "$LOG_DIR/$name.seal-create.out" --host 127.0.0.1 --port "$side_port" --stream "$STREAM" \
            --mode create --shards "$SHARDS" || rc=1
    done
    if ((rc == 0)); then
        for r in $(seq "$SCRAPE_ROUNDS"); do
            sides="on off"
            ((r % 2)) || sides="off on"
            for on in $sides; do
                if [[ $on == on ]]; then side_port=$on_port side_pid=$on_pid; else side_port=$off_port side_pid=$off_pid; fi
                for w in put get; do
                    settle "$side_port"
                    cpu0=$(proc_cpu "$side_pid")
                    if [[ $w == put ]]; then
                        # shellcheck disable=SC2046
                        measure "$name" "seal-$on-$w-$r" --host 127.0.0.1 --port "$side_port" --stream "$STREAM" \
                            $(workload putrecords) --pid "$side_pid" || rc=1
                    else
                        # shellcheck disable=SC2046
                        measure "$name" "seal-$on-$w-$r" --host 127.0.0.1 --port "$side_port" --stream "$STREAM" \
                            $(workload getrecords) --no-fill --pid "$side_pid" || rc=1
                    fi
                    echo "RESULT mode=seal-$w cpu_s=$(awk -v a="$cpu0" -v b="$(proc_cpu "$side_pid")" \
                        -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / hz }')" \
                        >"$LOG_DIR/$name.seal-$on-$w-$r.cpu.out"
                done
            done
        done
    fi
    stop_server "$on_pid"
    stop_server "$off_pid"
    return "$rc"
}

start_kinesd() { # PORT LOG [FLAG...] -> pid in START_PID, data dir in START_DIR
    local port=$1 log=$2 args
    START_DIR=$(mktemp -d)
    DATA_DIRS+=("$START_DIR")
    args=(--host 127.0.0.1 --port "$port" --data-dir "$START_DIR" --create-stream-ms 0 --register-consumer-ms 0
        --log-level warn "${@:3}")
    # durable mode (no --no-sync); lift throughput limits when the build has them
    if "$KINESD" --help 2>&1 | grep -q -- '--no-limits'; then
        args+=(--no-limits)
    else
        echo "run.sh: note: $KINESD has no --no-limits option; running without it"
    fi
    "$KINESD" "${args[@]}" >"$log" 2>&1 &
    START_PID=$!
}

# start_kinesd_pg PORT LOG URL: kinesd with --store URL -> pid in START_PID
start_kinesd_pg() {
    local args=(--host 127.0.0.1 --port "$1" --store "$3" --create-stream-ms 0 --log-level warn --no-limits)
    START_DIR=
    "$KINESD" "${args[@]}" >"$2" 2>&1 &
    START_PID=$!
}

start_kinesalite() {
    START_DIR=
    node "$KINESALITE_CLI" --port "$1" --createStreamMs 0 >"$2" 2>&1 &
    START_PID=$!
}

# kinesis-mock (npm kinesis-local) is a Scala.js build: one node process, in memory
start_kinesis_mock() {
    local tls_port
    tls_port=$("$KBENCH" --mode freeport)
    START_DIR=
    (cd "$(dirname "$KINESIS_MOCK_JS")" &&
        exec env KINESIS_MOCK_PLAIN_PORT="$1" KINESIS_MOCK_TLS_PORT="$tls_port" \
            SHOULD_PERSIST_DATA=false LOAD_DATA_IF_EXISTS=false LOG_LEVEL=WARN \
            CREATE_STREAM_DURATION=0ms REGISTER_STREAM_CONSUMER_DURATION=0ms SHARD_LIMIT=1000 node "$(basename "$KINESIS_MOCK_JS")") >"$2" 2>&1 &
    START_PID=$!
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# ---------------------------------------------------------------- ceiling --
if has_mode ceiling; then
    echo
    echo "=== kbench ceiling (built-in trivial server answering canned 200s, same cores) ==="
    for m in $MODES; do
        # the modes that are not one kbench workload of their own have no ceiling run
        [[ $m == ceiling || $m == putrecord-h2 || $m == transport || $m == fanout || $m == scrape || $m == sealing || $m == auth ]] && continue
        # shellcheck disable=SC2046
        kb "$LOG_DIR/ceiling.$m.out" --trivial-server $(workload "$m") || FAILED=1
    done
fi

# ---------------------------------------------------------------- servers --
for s in $SERVERS; do
    port=$("$KBENCH" --mode freeport)
    log="$LOG_DIR/$s.log"
    SUITE_DB=
    SUITE_PORTS=("$port")
    case "$s" in
        kinesd) start_kinesd "$port" "$log"; wait_s=10 ;;
        kinesd-unsealed) start_kinesd "$port" "$log" --no-encryption-at-rest; wait_s=10 ;;
        kinesalite) start_kinesalite "$port" "$log"; wait_s=20 ;;
        kinesis-mock) start_kinesis_mock "$port" "$log"; wait_s=60 ;;
        kinesd-pg | kinesd-pg2)
            SUITE_DB=bench_${s//-/_}
            if ! pg_fresh_db "$SUITE_DB"; then
                echo "run.sh: $s: could not create database $SUITE_DB" >&2
                FAILED=1
                continue
            fi
            start_kinesd_pg "$port" "$log" "$PG_DB_URL"; wait_s=20 ;;
    esac
    SERVER_PIDS+=("$START_PID")
    SUITE_PIDS=("$START_PID")
    ok=1
    wait_port "$START_PID" "$port" "$s" "$log" "$wait_s" || ok=0
    if [[ $ok == 1 && $s == kinesd-pg2 ]]; then
        # the second front-end starts once the first has created the schema and the stream
        kb "$LOG_DIR/$s.create.out" --host 127.0.0.1 --port "$port" --stream "$STREAM" --mode create \
            --shards "$SHARDS" || ok=0
        port2=$("$KBENCH" --mode freeport)
        start_kinesd_pg "$port2" "$LOG_DIR/$s-fe2.log" "$PG_DB_URL"
        SERVER_PIDS+=("$START_PID")
        SUITE_PIDS+=("$START_PID")
        SUITE_PORTS+=("$port2")
        wait_port "$START_PID" "$port2" "$s (second front-end)" "$LOG_DIR/$s-fe2.log" "$wait_s" || ok=0
        # the second front-end must see the stream (kbench create: existed=1)
        if [[ $ok == 1 ]] && ! kb "$LOG_DIR/$s-fe2.create.out" --host 127.0.0.1 --port "$port2" \
            --stream "$STREAM" --mode create --shards "$SHARDS"; then
            echo "run.sh: $s: the second front-end does not see the stream" >&2
            ok=0
        fi
    fi
    if [[ $ok == 1 ]]; then
        run_suite "$s" "${SUITE_PIDS[0]}" "$port" "$START_DIR" || { echo "run.sh: $s suite failed" >&2; FAILED=1; }
    else
        FAILED=1
    fi
    for pid in "${SUITE_PIDS[@]}"; do stop_server "$pid"; done
done

# ----------------------------------------------------------------- table --
# field FILE-STEM KEY: value of KEY in the last RESULT line of LOG_DIR/STEM.out (empty if none)
field() {
    local f="$LOG_DIR/$1.out"
    [[ -f $f ]] || return 0
    awk -v key="$2" '
        $1 == "RESULT" {
            v = ""
            for (i = 2; i <= NF; i++) {
                split($i, kv, "=")
                if (kv[1] == key) v = substr($i, length(key) + 2)
            }
            last = v
        }
        END { if (last != "") print last }' "$f"
}

# over SERVER KEY AGG MODES...: sum or max of KEY over the server's modes
over() {
    local s=$1 key=$2 agg=$3 m f files=()
    shift 3
    for m in "$@"; do
        f="$LOG_DIR/$s.$m.out"
        [[ -f $f ]] && files+=("$f")
    done
    [[ ${#files[@]} -gt 0 ]] || return 0
    awk -v key="$key" -v agg="$agg" '
        $1 == "RESULT" {
            for (i = 2; i <= NF; i++) {
                split($i, kv, "=")
                if (kv[1] != key || kv[2] !~ /^[0-9.]+$/) continue
                seen = 1
                if (agg == "sum") t += kv[2]; else if (kv[2] + 0 > t + 0) t = kv[2]
            }
        }
        END { if (seen) print t }' "${files[@]}"
}

# checkpoints SERVER: lower bound on the 32 MiB log checkpoints the checkpoint mode crossed
# (its payload alone; the log also holds keys and headers)
checkpoints() {
    local recs
    recs=$(field "$1.checkpoint" records)
    [[ -n $recs ]] || return 0
    awk -v r="$recs" -v b="$CKPT_RECORD" 'BEGIN { printf "%d", r * b / 33554432 }'
}

# pct A B: A as a percentage of B
pct() {
    awk -v a="${1:-}" -v b="${2:-}" 'BEGIN {
        if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.0f", 100 * a / b }'
}

# row LABEL CEILING KINESD KINESALITE KINESIS_MOCK TARGET (TARGET like ">=150000" / "<=64")
row() {
    awk -v label="$1" -v c="${2:-}" -v a="${3:-}" -v b="${4:-}" -v k="${5:-}" -v target="${6:-}" '
        function num(x) { return x ~ /^-?[0-9]+([.][0-9]+)?$/ }
        function ratio(x, y,   r) {
            if (!num(x) || !num(y) || y + 0 <= 0) return "n/a"
            r = x / y
            if (r >= 100) return sprintf("%.0fx", r)
            if (r >= 10) return sprintf("%.1fx", r)
            if (r >= 0.1) return sprintf("%.2fx", r)
            return r >= 0.001 ? sprintf("%.3fx", r) : "<0.001x"
        }
        function show(x) { return x == "" ? "n/a" : x }
        BEGIN {
            verdict = ""
            if (target != "" && num(a)) {
                op = substr(target, 1, 2); t = substr(target, 3) + 0
                ok = (op == ">=") ? (a + 0 >= t) : (a + 0 <= t)
                verdict = ok ? "met" : "MISSED"
            }
            printf "%-36s %11s %11s %11s %11s %9s %9s  %-9s %s\n", label, show(c), show(a), show(b),
                show(k), ratio(a, b), ratio(a, k), target, verdict
        }'
}

# R LABEL MODE KEY TARGET: one row of a mode's RESULT key for the ceiling and all servers
R() {
    row "$1" "$(field "ceiling.$2" "$3")" "$(field "kinesd.$2" "$3")" "$(field "kinesalite.$2" "$3")" \
        "$(field "kinesis-mock.$2" "$3")" "${4:-}"
}

disk_bw=$(field disk.write mb_per_s)
mb_target=$(awk -v d="$disk_bw" 'BEGIN { if (d ~ /^[0-9.]+$/) printf ">=%.0f", 0.6 * d }')
small_modes=(putrecord putrecords getrecords)
all_modes=()
for m in $MODES; do [[ $m == ceiling || $m == transport || $m == fanout || $m == scrape || $m == sealing || $m == auth ]] || all_modes+=("$m"); done

echo
echo "=== kinesd / kinesalite / kinesis-mock: ${SECS} s per mode, $SHARDS shards; kinesd durable," \
    "--no-limits; the others in memory ==="
echo "ceiling = kbench against its own trivial server (the load generator's limit on these cores)."
echo "ratios = kinesd / the other (rates: higher is better; latency and memory: lower is better)."
echo "MB = 10^6 bytes of record payload. RssAnon is sampled every 100 ms during each mode."
echo "load average (1, 5, 15 min) before the run: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)" \
    "on $(nproc) cores (other work on the machine lowers every figure)."
printf "%-36s %11s %11s %11s %11s %9s %9s  %-9s %s\n" metric ceiling kinesd kinesalite kinesis-mock \
    kd/klite kd/kmock target "kinesd vs target"
printf '%.0s-' $(seq 128)
echo
if has_mode putrecord; then
    row "disk write+fdatasync p50 us" "" "$(field disk.sync-putrecord p50_us)"
    R "PutRecord 16 conn, 100 B: req/s" putrecord requests_per_s ">=14000"
    R "PutRecord p50 ms" putrecord p50_ms
    R "PutRecord p99 ms" putrecord p99_ms
fi
if has_mode putrecord-h2; then
    h1=$(field kinesd.putrecord requests_per_s)
    R "PutRecord h2c 1 x 64 streams: req/s" putrecord-h2 requests_per_s \
        "$(awk -v h="$h1" 'BEGIN { if (h ~ /^[0-9.]+$/) printf ">=%.0f", h }')"
    R "PutRecord h2c mean ms" putrecord-h2 mean_ms
    R "PutRecord h2c max ms" putrecord-h2 max_ms
fi
# cpu_per SERVER MODE: the server's CPU microseconds per record of a mode
cpu_per() {
    awk -v c="$(field "$1.$2.cpu" cpu_s)" -v r="$(field "$1.$2" records)" 'BEGIN {
        if (c ~ /^[0-9.]+$/ && r ~ /^[0-9]+$/ && r + 0 > 0) printf "%.2f", c * 1e6 / r }'
}
if has_mode putrecords; then
    R "PutRecords 500 x 100 B: records/s" putrecords records_per_s ">=400000"
    R "PutRecords 500 x 100 B: p99 ms" putrecords p99_ms
    if has_server kinesd-unsealed; then
        row "  % of --no-encryption-at-rest" "" \
            "$(pct "$(field kinesd.putrecords records_per_s)" "$(field kinesd-unsealed.putrecords records_per_s)")" "" "" ">=85"
        # the steadier figure on shared cores: records per second of kinesd's own CPU
        row "  kinesd CPU us/record: sealed" "" "$(cpu_per kinesd putrecords)"
        row "  kinesd CPU us/record: unsealed" "" "$(cpu_per kinesd-unsealed putrecords)"
        row "  sealed records per CPU second, %" "" "$(pct "$(cpu_per kinesd-unsealed putrecords)" "$(cpu_per kinesd putrecords)")"
    fi
fi
if has_mode getrecords; then
    R "GetRecords Limit 10000: records/s" getrecords records_per_s ">=1500000"
    R "GetRecords p99 ms" getrecords p99_ms
    if has_server kinesd-unsealed; then
        row "  % of --no-encryption-at-rest" "" \
            "$(pct "$(field kinesd.getrecords records_per_s)" "$(field kinesd-unsealed.getrecords records_per_s)")" "" "" ">=85"
        # the steadier figure on shared cores: records per second of kinesd's own CPU
        row "  kinesd CPU us/record: sealed" "" "$(cpu_per kinesd getrecords)"
        row "  kinesd CPU us/record: unsealed" "" "$(cpu_per kinesd-unsealed getrecords)"
        row "  sealed records per CPU second, %" "" "$(pct "$(cpu_per kinesd-unsealed getrecords)" "$(cpu_per kinesd getrecords)")"
    fi
fi
if has_mode putrecords-kms; then
    R "PutRecords KMS-encrypted stream: rec/s" putrecords-kms records_per_s
    row "  KMS stream, % of the plain one" "" \
        "$(pct "$(field kinesd.putrecords-kms records_per_s)" "$(field kinesd.putrecords records_per_s)")"
    R "  p99 ms" putrecords-kms p99_ms
    row "  kinesd CPU us/record: plain" "" "$(cpu_per kinesd putrecords)"
    row "  kinesd CPU us/record: KMS stream" "" "$(cpu_per kinesd putrecords-kms)"
    row "  KMS stream CPU, % of the plain one" "" "$(pct "$(cpu_per kinesd putrecords-kms)" "$(cpu_per kinesd putrecords)")"
fi
if has_mode getrecords-kms; then
    R "GetRecords KMS-encrypted stream: rec/s" getrecords-kms records_per_s
    row "  KMS stream, % of the plain one" "" \
        "$(pct "$(field kinesd.getrecords-kms records_per_s)" "$(field kinesd.getrecords records_per_s)")"
    R "  p99 ms" getrecords-kms p99_ms
    row "  kinesd CPU us/record: plain" "" "$(cpu_per kinesd getrecords)"
    row "  kinesd CPU us/record: KMS stream" "" "$(cpu_per kinesd getrecords-kms)"
    row "  KMS stream CPU, % of the plain one" "" "$(pct "$(cpu_per kinesd getrecords-kms)" "$(cpu_per kinesd getrecords)")"
fi
if has_mode putrecords-1k || has_mode putrecords-25k; then
    row "disk sequential write MB/s (${DISK_MIB} MiB)" "" "$disk_bw"
fi
if has_mode putrecords-1k; then
    R "PutRecords 500 x 1 KiB: MB/s" putrecords-1k mb_per_s "$mb_target"
    row "  kinesd, % of the disk's bandwidth" "" "$(pct "$(field kinesd.putrecords-1k mb_per_s)" "$disk_bw")"
fi
if has_mode putrecords-25k; then
    R "PutRecords 25 x 25 KiB: MB/s" putrecords-25k mb_per_s "$mb_target"
    row "  kinesd, % of the disk's bandwidth" "" "$(pct "$(field kinesd.putrecords-25k mb_per_s)" "$disk_bw")"
fi
if has_mode checkpoint; then
    row "disk write+fdatasync p50 us" "" "$(field disk.sync-checkpoint p50_us)"
    R "Checkpoint run ${CKPT_SECS} s, ${CKPT_RECORD} B: req/s" checkpoint requests_per_s
    row "  log checkpoints crossed (at least)" "" "$(checkpoints kinesd)"
    R "  PutRecord p99 ms" checkpoint p99_ms
    R "  PutRecord p99.9 ms" checkpoint p999_ms
    R "  PutRecord max ms" checkpoint max_ms
fi
if has_mode fanout; then
    R "Fan-out 4 x 4: put-to-event p50 ms" fanout p50_ms "<=10"
    R "  put-to-event p99 ms" fanout p99_ms
    R "  records/s delivered, 16 subscriptions" fanout delivered_records_per_s
    R "  records/s put meanwhile" fanout put_records_per_s
    R "  every record to every consumer" fanout complete
fi
# mean of a KEY over the rounds BASE-1 .. BASE-SCRAPE_ROUNDS of a compared mode (scrape, auth)
rounds_mean() { # BASE KEY
    local r sum=0 n=0 v
    for r in $(seq "$SCRAPE_ROUNDS"); do
        v=$(field "$1-$r" "$2")
        [[ $v =~ ^[0-9.]+$ ]] && { sum=$(awk -v a="$sum" -v b="$v" 'BEGIN { print a + b }'); n=$((n + 1)); }
    done
    ((n > 0)) && awk -v s="$sum" -v n="$n" 'BEGIN { printf "%.1f", s / n }'
    return 0
}
# kinesd's CPU microseconds per record over every round of BASE (BASE-R.cpu holds cpu_s)
rounds_cpu() { # BASE
    local r cpu=0 recs=0 c n
    for r in $(seq "$SCRAPE_ROUNDS"); do
        c=$(field "$1-$r.cpu" cpu_s)
        n=$(field "$1-$r" records)
        [[ $c =~ ^[0-9.]+$ && $n =~ ^[0-9]+$ ]] || continue
        cpu=$(awk -v a="$cpu" -v b="$c" 'BEGIN { print a + b }')
        recs=$((recs + n))
    done
    awk -v c="$cpu" -v n="$recs" 'BEGIN { if (n > 0) printf "%.2f", c * 1e6 / n }'
}
ratio_of() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN {
    if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.3f", a / b }'; }
if has_mode scrape && [[ -f $LOG_DIR/kinesd.scrapes.txt ]]; then
    scrape_mean() { rounds_mean "kinesd.scrape-$2-$1" "$3"; } # LOAD off|on KEY
    scrape_cpu() { rounds_cpu "kinesd.scrape-$2-$1"; }        # LOAD off|on
    scrape_rows() { # LOAD LABEL KEY UNIT
        local off on
        off=$(scrape_mean "$1" off "$3")
        on=$(scrape_mean "$1" on "$3")
        row "$2, no scrape" "" "$off"
        row "  with GET /metrics every second" "" "$on"
        row "  with / without (target >= 0.98)" "" "$(ratio_of "$on" "$off")" "" "" ">=0.98"
        row "  kinesd CPU us/$4, no scrape" "" "$(scrape_cpu "$1" off)"
        row "  kinesd CPU us/$4, with" "" "$(scrape_cpu "$1" on)"
        row "  CPU with / without (target <= 1.02)" "" "$(ratio_of "$(scrape_cpu "$1" on)" \
            "$(scrape_cpu "$1" off)")" "" "" "<=1.02"
    }
    scrape_rows putrecord "PutRecord req/s" requests_per_s request
    scrape_rows putrecords "PutRecords records/s" records_per_s record
    row "scrapes (all HTTP 200)" "" "$(awk '$1 == 200 { ok++ } END { printf "%d/%d", ok, NR }' \
        "$LOG_DIR/kinesd.scrapes.txt")"
    row "  ms per scrape, mean / max" "" "$(awk '{ t += $2; if ($2 > m) m = $2 } END {
        if (NR) printf "%.2f/%.2f", 1000 * t / NR, 1000 * m }' "$LOG_DIR/kinesd.scrapes.txt")"
    row "  exposition bytes" "" "$(awk '{ b = $3 } END { print b }' "$LOG_DIR/kinesd.scrapes.txt")"
    # one scrape's CPU against the CPU kinesd spends in a second of PutRecord load: the share
    # of that load's capacity that a scrape a second can take
    scrape_ms=$(field kinesd.scrape-cost cpu_ms_per_scrape)
    row "  kinesd CPU ms per scrape, alone" "" "$scrape_ms"
    load_ms=$(awk -v us="$(scrape_cpu putrecord off)" -v r="$(scrape_mean putrecord off requests_per_s)" \
        'BEGIN { if (us > 0 && r > 0) printf "%.1f", us * r / 1000 }')
    row "  per s of PutRecord CPU (<= 0.02)" "" "$(awk -v a="$scrape_ms" -v b="$load_ms" \
        'BEGIN { if (a ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.5f", a / b }')" "" "" "<=0.02"
    scrape_runs=()
    for r in $(seq "$SCRAPE_ROUNDS"); do
        for load in putrecord putrecords; do scrape_runs+=("scrape-off-$load-$r" "scrape-on-$load-$r"); done
    done
    row "  errors in these runs" "" "$(over kinesd errors sum "${scrape_runs[@]}")"
fi
if has_mode sealing && [[ -f $LOG_DIR/kinesd.seal-on-put-1.out ]]; then
    seal_mean() { rounds_mean "kinesd.seal-$1-$2" records_per_s; } # on|off put|get
    seal_cpu() { rounds_cpu "kinesd.seal-$1-$2"; }                 # on|off put|get
    seal_rows() { # put|get LABEL
        row "$2 sealed, rec/s" "" "$(seal_mean on "$1")"
        row "  --no-encryption-at-rest" "" "$(seal_mean off "$1")"
        row "  sealed, % of unsealed" "" "$(pct "$(seal_mean on "$1")" "$(seal_mean off "$1")")" "" "" ">=85"
        row "  kinesd CPU us/record, sealed" "" "$(seal_cpu on "$1")"
        row "  kinesd CPU us/record, unsealed" "" "$(seal_cpu off "$1")"
        row "  sealed records per CPU second, %" "" "$(pct "$(seal_cpu off "$1")" "$(seal_cpu on "$1")")"
    }
    seal_rows put "PutRecords 500x100 B" # a fresh pair of servers
    seal_rows get "GetRecords 10000"
    seal_runs=()
    for r in $(seq "$SCRAPE_ROUNDS"); do
        for w in put get; do seal_runs+=("seal-on-$w-$r" "seal-off-$w-$r"); done
    done
    row "  errors in these runs" "" "$(over kinesd errors sum "${seal_runs[@]}")"
fi
if has_mode auth && [[ -f $LOG_DIR/kinesd.auth-on-1.out ]]; then
    auth_mean() { rounds_mean "kinesd.auth-$1" records_per_s; } # off|on
    auth_cpu() { rounds_cpu "kinesd.auth-$1"; }                 # off|on
    row "PutRecords signed, records/s, no --auth" "" "$(auth_mean off)"
    row "  with --auth (every signature verified)" "" "$(auth_mean on)"
    row "  with / without (target >= 0.95)" "" "$(ratio_of "$(auth_mean on)" "$(auth_mean off)")" "" "" ">=0.95"
    row "  kinesd CPU us/record, no --auth" "" "$(auth_cpu off)"
    row "  kinesd CPU us/record, --auth" "" "$(auth_cpu on)"
    row "  CPU with / without (target <= 1.05)" "" "$(ratio_of "$(auth_cpu on)" "$(auth_cpu off)")" "" "" "<=1.05"
    auth_runs=()
    for r in $(seq "$SCRAPE_ROUNDS"); do auth_runs+=("auth-off-$r" "auth-on-$r"); done
    row "  errors in these runs" "" "$(over kinesd errors sum "${auth_runs[@]}")"
fi
row "errors (all modes)" "$(over ceiling errors sum "${all_modes[@]}")" \
    "$(over kinesd errors sum "${all_modes[@]}")" "$(over kinesalite errors sum "${all_modes[@]}")" \
    "$(over kinesis-mock errors sum "${all_modes[@]}")"
io_failed() { # SERVER: "transport errors/failed records" over all modes
    local a b
    a=$(over "$1" io_errors sum "${all_modes[@]}")
    b=$(over "$1" failed_records sum "${all_modes[@]}")
    [[ -z $a$b ]] || echo "${a:-0}/${b:-0}"
}
row "transport errors/failed records" "" "$(io_failed kinesd)" "$(io_failed kinesalite)" \
    "$(io_failed kinesis-mock)"
MEM() { # LABEL KEY TARGET MODES...
    local label=$1 key=$2 target=$3
    shift 3
    row "$label" "" "$(over kinesd "$key" max "$@")" "$(over kinesalite "$key" max "$@")" \
        "$(over kinesis-mock "$key" max "$@")" "$target"
}
MEM "peak RssAnon MB, 100 B modes" peak_rss_anon_mb "<=48" "${small_modes[@]}"
MEM "peak RssAnon MB, all modes" peak_rss_anon_mb "<=48" "${all_modes[@]}"
MEM "VmHWM MB (file pages too), all modes" peak_rss_mb "" "${all_modes[@]}"
for m in "${all_modes[@]}"; do
    MEM "  RssAnon peak in $m" peak_rss_anon_mb "" "$m"
done
if has_server kinesd-pg || has_server kinesd-pg2; then
    # prow LABEL LMDB PG PG2: a row of the PostgreSQL table with the three ratios
    prow() {
        awk -v label="$1" -v a="${2:-}" -v b="${3:-}" -v c="${4:-}" '
            function num(x) { return x ~ /^-?[0-9]+([.][0-9]+)?$/ }
            function ratio(x, y,   r) {
                if (!num(x) || !num(y) || y + 0 <= 0) return "n/a"
                r = x / y
                return r >= 10 ? sprintf("%.1fx", r) : r >= 0.001 ? sprintf("%.3fx", r) : "<0.001x"
            }
            function show(x) { return x == "" ? "n/a" : x }
            BEGIN { printf "%-40s %11s %11s %11s %9s %9s %9s\n", label, show(a), show(b), show(c),
                        ratio(b, a), ratio(c, a), ratio(c, b) }'
    }
    # per MODE KEY SERVER: derived figures per record (or request)
    per() {
        local rate cpu com
        rate=$(field "$3.$1" "$2")
        cpu=$(field "$3.$1.pg" pg_cpu_pct)
        com=$(field "$3.$1.pg" commits_per_s)
        awk -v r="$rate" -v cpu="$cpu" -v com="$com" -v what="$4" 'BEGIN {
            if (r !~ /^[0-9.]+$/ || r + 0 <= 0) exit
            if (what == "cpu" && cpu ~ /^[0-9.]+$/) printf "%.1f", cpu / 100 * 1e6 / r
            if (what == "per_commit" && com ~ /^[0-9.]+$/ && com + 0 > 0) printf "%.1f", r / com }'
    }
    PG() { # LABEL MODE KEY [FILE-SUFFIX]
        local sfx=${4:-}
        prow "$1" "$(field "kinesd.$2$sfx" "$3")" "$(field "kinesd-pg.$2$sfx" "$3")" "$(field "kinesd-pg2.$2$sfx" "$3")"
    }
    PGD() { # LABEL MODE KEY WHAT
        prow "$1" "" "$(per "$2" "$3" kinesd-pg "$4")" "$(per "$2" "$3" kinesd-pg2 "$4")"
    }
    echo
    echo "=== kinesd on LMDB vs on PostgreSQL (one front-end; two front-ends, load split, figures" \
        "summed): ${SECS} s per mode ==="
    echo "PostgreSQL CPU = utime+stime of the postmaster and its children over the mode, % of wall" \
        "time (100 = one core of $(nproc)); commits = pg_stat_database.xact_commit of the database."
    printf "%-40s %11s %11s %11s %9s %9s %9s\n" metric kinesd kinesd-pg kinesd-pg2 pg/lmdb pg2/lmdb pg2/pg
    printf '%.0s-' $(seq 110)
    echo
    for m in putrecords putrecord getrecords; do
        has_mode "$m" || continue
        case "$m" in
            putrecords) label="PutRecords 500 x 100 B: records/s"; key=records_per_s; unit=record ;;
            putrecord) label="PutRecord 16 conn, 100 B: req/s"; key=requests_per_s; unit=request ;;
            getrecords) label="GetRecords Limit 10000: records/s"; key=records_per_s; unit=record ;;
        esac
        PG "$label" "$m" "$key"
        PG "  p99 ms (two front-ends: the worse)" "$m" p99_ms
        PG "  PostgreSQL CPU, % of wall" "$m" pg_cpu_pct .pg
        PG "  commits/s" "$m" commits_per_s .pg
        PGD "  ${unit}s per commit" "$m" "$key" per_commit
        PGD "  PostgreSQL CPU us per $unit" "$m" "$key" cpu
        PG "  errors" "$m" errors
    done
fi
echo
echo "raw kbench output and server logs: $LOG_DIR/"
if has_mode transport && has_server kinesd; then
    KBENCH_PUTRECORD_OUT="$LOG_DIR/kinesd.putrecord.out" BENCH_SECONDS=$SECS KINESD_BIN=$KINESD \
        BENCH_LOG_DIR=$LOG_DIR tools/bench/transport.sh || FAILED=1
fi
if [[ $FAILED != 0 ]]; then
    echo "run.sh: a server failed to start or a benchmark could not run (see above)" >&2
    exit 1
fi
