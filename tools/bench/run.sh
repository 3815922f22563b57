#!/usr/bin/env bash
# Benchmark kinesd against kinesalite with tools/bench/kbench.
#
# Usage: tools/bench/run.sh [--kinesd-only | --kinesalite-only] [-h]
#
# Environment:
#   BENCH_SECONDS   seconds per measured mode (default 8)
#   BENCH_SHARDS    shards in the benchmark stream (default 4)
#   BENCH_GET_FILL  if set, getrecords first puts this many records per shard
#                   (default: read back what the put modes wrote, --no-fill)
#   KINESD_BIN      server binary (default build/kinesd)
#   KINESALITE_CLI  kinesalite cli.js (default build/npm/node_modules/kinesalite/cli.js,
#                   installed there with npm when missing)
#   BENCH_LOG_DIR   where server logs and raw kbench output go (default build/bench)
#
# Steps: build build/kbench if needed, start kinesd (durable mode) on a free
# loopback port, create a stream, run putrecord (16 connections), putrecords
# (500 x 100 B) and getrecords (Limit 10000) with the server pid for RSS, do
# the same against kinesalite (in memory), then print a comparison table. Before
# kinesd's PutRecord run, kbench times bare write+fdatasync calls in kinesd's data
# directory: the floor under a durable acknowledgement at that moment.
# Servers started here are stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

SECS=${BENCH_SECONDS:-8}
SHARDS=${BENCH_SHARDS:-4}
KINESD=${KINESD_BIN:-build/kinesd}
KINESALITE_CLI=${KINESALITE_CLI:-build/npm/node_modules/kinesalite/cli.js}
LOG_DIR=${BENCH_LOG_DIR:-build/bench}
KBENCH=build/kbench
STREAM=bench
RUN_KINESD=1
RUN_KINESALITE=1
FAILED=0

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

for arg in "$@"; do
    case "$arg" in
        --kinesd-only) RUN_KINESALITE=0 ;;
        --kinesalite-only) RUN_KINESD=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
    esac
done
if [[ $RUN_KINESD == 0 && $RUN_KINESALITE == 0 ]]; then
    echo "run.sh: --kinesd-only and --kinesalite-only exclude each other" >&2
    exit 2
fi
if ! [[ $SECS =~ ^[0-9]+([.][0-9]+)?$ ]] || ! [[ $SHARDS =~ ^[0-9]+$ ]]; then
    echo "run.sh: BENCH_SECONDS and BENCH_SHARDS must be numbers" >&2
    exit 2
fi
if [[ -n ${BENCH_GET_FILL:-} ]] && ! [[ $BENCH_GET_FILL =~ ^[0-9]+$ ]]; then
    echo "run.sh: BENCH_GET_FILL must be a whole number" >&2
    exit 2
fi
# upper bound for one kbench invocation (it stops by itself; this is a backstop)
KB_TIMEOUT=$(awk -v s="$SECS" 'BEGIN { printf "%d", s + 150 }')

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
if [[ ! -x $KBENCH || tools/bench/kbench.c -nt $KBENCH ]]; then
    if [[ -f Makefile ]] && grep -Eq '^(\$\(BUILD\)|build)/kbench[[:space:]]*:' Makefile; then
        echo "run.sh: building $KBENCH with make"
        make build/kbench
    else
        echo "run.sh: building $KBENCH"
        crypto_flags=$(pkg-config --cflags --libs libcrypto 2>/dev/null || echo -lcrypto)
        # shellcheck disable=SC2086
        ${CC:-cc} -std=c11 -O2 -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes -Wvla \
            -D_GNU_SOURCE -pthread -o "$KBENCH" tools/bench/kbench.c $crypto_flags -pthread
    fi
fi

# -------------------------------------------------------- prerequisites --
if [[ $RUN_KINESD == 1 && ! -x $KINESD ]]; then
    cat >&2 <<EOF
run.sh: $KINESD not found (or not executable).
        Build the server first (e.g. 'make'), or set KINESD_BIN.
        To measure only the kinesalite baseline: tools/bench/run.sh --kinesalite-only
EOF
    exit 2
fi

if [[ $RUN_KINESALITE == 1 ]]; then
    if ! command -v node >/dev/null 2>&1; then
        echo "run.sh: node not found; skipping kinesalite" >&2
        RUN_KINESALITE=0
    elif [[ ! -f $KINESALITE_CLI ]]; then
        if [[ $KINESALITE_CLI == build/npm/node_modules/kinesalite/cli.js ]] &&
            command -v npm >/dev/null 2>&1; then
            echo "run.sh: installing kinesalite into build/npm"
            if ! npm install --prefix build/npm --no-audit --no-fund --loglevel=error kinesalite; then
                echo "run.sh: npm install kinesalite failed; skipping kinesalite" >&2
                RUN_KINESALITE=0
            fi
        else
            echo "run.sh: $KINESALITE_CLI not found; skipping kinesalite" >&2
            RUN_KINESALITE=0
        fi
    fi
    if [[ $RUN_KINESALITE == 0 && $RUN_KINESD == 0 ]]; then
        echo "run.sh: nothing to benchmark" >&2
        exit 2
    fi
fi

# ---------------------------------------------------------------- helpers --
# wait_port PID PORT NAME LOG: wait until PORT accepts connections
wait_port() {
    local pid=$1 port=$2 name=$3 log=$4 _
    for _ in $(seq 200); do
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
    echo "run.sh: $name did not listen on port $port within 10 s" >&2
    return 1
}

# run_suite NAME PID PORT: run all modes, raw output in LOG_DIR/NAME.out
run_suite() {
    local name=$1 pid=$2 port=$3 disk_dir=${4:-} out="$LOG_DIR/$1.out" get_fill rc=0
    : >"$out"
    local common=(--host 127.0.0.1 --port "$port" --stream "$STREAM")
    if [[ -n ${BENCH_GET_FILL:-} ]]; then
        get_fill=(--fill "$BENCH_GET_FILL")
    else
        get_fill=(--no-fill)
    fi
    echo
    echo "=== $name (pid $pid, port $port) ==="
    kb "$out" "${common[@]}" --mode create --shards "$SHARDS" || return 1
    # the disk's own sync latency right before PutRecord, which waits for it on every request
    if [[ -n $disk_dir ]]; then
        kb "$out" --mode disksync --dir "$disk_dir" || rc=1
    fi
    kb "$out" "${common[@]}" --mode putrecord --connections 16 --record-size 100 \
        --seconds "$SECS" --pid "$pid" || rc=1
    kb "$out" "${common[@]}" --mode putrecords --connections 4 --batch 500 --record-size 100 \
        --seconds "$SECS" --pid "$pid" || rc=1
    kb "$out" "${common[@]}" --mode getrecords --limit 10000 "${get_fill[@]}" \
        --seconds "$SECS" --pid "$pid" || rc=1
    return "$rc"
}

# kb OUTFILE ARGS...: run kbench, show and keep its output
kb() {
    local out=$1
    shift
    # pipefail: the pipeline fails when kbench does
    timeout --signal=TERM "$KB_TIMEOUT" "$KBENCH" "$@" 2>&1 | tee -a "$out"
}

# field NAME MODE KEY: value of KEY in the RESULT line of MODE (empty if none)
field() {
    local f="$LOG_DIR/$1.out"
    [[ -f $f ]] || return 0
    awk -v mode="$2" -v key="$3" '
        $1 == "RESULT" && $2 == "mode=" mode {
            for (i = 3; i <= NF; i++) {
                split($i, kv, "=")
                if (kv[1] == key) v = substr($i, length(key) + 2)
            }
        }
        END { if (v != "") print v }' "$f"
}

# sum of errors + io_errors + failed_records over all modes
error_total() {
    local f="$LOG_DIR/$1.out"
    [[ -f $f ]] || return 0
    awk '$1 == "RESULT" {
            for (i = 3; i <= NF; i++) {
                split($i, kv, "=")
                if (kv[1] == "errors" || kv[1] == "io_errors" || kv[1] == "failed_records") {
                    t += kv[2]; seen = 1
                }
            }
        }
        END { if (seen) print t }' "$f"
}

# highest peak_rss_mb over all modes (VmHWM only grows, this is the last)
peak_rss() {
    local f="$LOG_DIR/$1.out"
    [[ -f $f ]] || return 0
    awk '$1 == "RESULT" {
            for (i = 3; i <= NF; i++) {
                split($i, kv, "=")
                if (kv[1] == "peak_rss_mb" && kv[2] != "na" && (m == "" || kv[2] + 0 > m + 0)) m = kv[2]
            }
        }
        END { if (m != "") print m }' "$f"
}

# ---------------------------------------------------------------- kinesd --
if [[ $RUN_KINESD == 1 ]]; then
    port=$("$KBENCH" --mode freeport)
    data_dir=$(mktemp -d)
    DATA_DIRS+=("$data_dir")
    log="$LOG_DIR/kinesd.log"
    kinesd_args=(--host 127.0.0.1 --port "$port" --data-dir "$data_dir"
        --create-stream-ms 0 --log-level warn)
    # durable mode (no --no-sync); lift throughput limits when the build has them
    if "$KINESD" --help 2>&1 | grep -q -- '--no-limits'; then
        kinesd_args+=(--no-limits)
    else
        echo "run.sh: note: $KINESD has no --no-limits option; running without it"
    fi
    "$KINESD" "${kinesd_args[@]}" >"$log" 2>&1 &
    pid=$!
    SERVER_PIDS+=("$pid")
    if wait_port "$pid" "$port" kinesd "$log"; then
        run_suite kinesd "$pid" "$port" "$data_dir" || { echo "run.sh: kinesd suite failed" >&2; FAILED=1; }
    else
        : >"$LOG_DIR/kinesd.out"
        FAILED=1
    fi
    stop_server "$pid"
fi

# ------------------------------------------------------------ kinesalite --
if [[ $RUN_KINESALITE == 1 ]]; then
    port=$("$KBENCH" --mode freeport)
    log="$LOG_DIR/kinesalite.log"
    node "$KINESALITE_CLI" --port "$port" --createStreamMs 0 >"$log" 2>&1 &
    pid=$!
    SERVER_PIDS+=("$pid")
    if wait_port "$pid" "$port" kinesalite "$log"; then
        run_suite kinesalite "$pid" "$port" || { echo "run.sh: kinesalite suite failed" >&2; FAILED=1; }
    else
        : >"$LOG_DIR/kinesalite.out"
        FAILED=1
    fi
    stop_server "$pid"
fi

# ----------------------------------------------------------------- table --
A=kinesd
B=kinesalite
[[ $RUN_KINESD == 1 ]] || rm -f "$LOG_DIR/kinesd.out"
[[ $RUN_KINESALITE == 1 ]] || rm -f "$LOG_DIR/kinesalite.out"

# row LABEL VALUE_A VALUE_B TARGET (TARGET like ">=150000" / "<=64" / "")
row() {
    local label=$1 a=${2:-n/a} b=${3:-n/a} target=${4:-}
    awk -v label="$label" -v a="$a" -v b="$b" -v target="$target" '
        function num(x) { return x ~ /^-?[0-9]+([.][0-9]+)?$/ }
        BEGIN {
            ratio = "n/a"
            if (num(a) && num(b) && b + 0 > 0) ratio = sprintf("%.2fx", a / b)
            verdict = ""
            if (target != "" && num(a)) {
                op = substr(target, 1, 2); t = substr(target, 3) + 0
                ok = (op == ">=") ? (a + 0 >= t) : (a + 0 <= t)
                verdict = ok ? "met" : "MISSED"
            }
            printf "%-26s %14s %14s %9s   %-10s %s\n", label, a, b, ratio, target, verdict
        }'
}

echo
echo "=== kinesd vs kinesalite: ${SECS} s per mode, $SHARDS shards, 100 B records ==="
echo "ratio = kinesd / kinesalite (rates: higher is better; latency and RSS: lower is better)"
printf "%-26s %14s %14s %9s   %-10s %s\n" metric kinesd kinesalite ratio target "kinesd vs target"
printf '%.0s-' $(seq 88)
echo
row "PutRecord req/s" "$(field $A putrecord requests_per_s)" "$(field $B putrecord requests_per_s)" ">=10000"
row "disk fdatasync p50 us" "$(field $A disksync p50_us)" "n/a"
row "PutRecord MB/s" "$(field $A putrecord mb_per_s)" "$(field $B putrecord mb_per_s)"
row "PutRecord p50 ms" "$(field $A putrecord p50_ms)" "$(field $B putrecord p50_ms)"
row "PutRecord p99 ms" "$(field $A putrecord p99_ms)" "$(field $B putrecord p99_ms)"
row "PutRecords records/s" "$(field $A putrecords records_per_s)" "$(field $B putrecords records_per_s)" ">=150000"
row "PutRecords req/s" "$(field $A putrecords requests_per_s)" "$(field $B putrecords requests_per_s)"
row "PutRecords MB/s" "$(field $A putrecords mb_per_s)" "$(field $B putrecords mb_per_s)"
row "PutRecords p50 ms" "$(field $A putrecords p50_ms)" "$(field $B putrecords p50_ms)"
row "PutRecords p99 ms" "$(field $A putrecords p99_ms)" "$(field $B putrecords p99_ms)"
row "GetRecords records/s" "$(field $A getrecords records_per_s)" "$(field $B getrecords records_per_s)" ">=500000"
row "GetRecords req/s" "$(field $A getrecords requests_per_s)" "$(field $B getrecords requests_per_s)"
row "GetRecords MB/s" "$(field $A getrecords mb_per_s)" "$(field $B getrecords mb_per_s)"
row "GetRecords p50 ms" "$(field $A getrecords p50_ms)" "$(field $B getrecords p50_ms)"
row "GetRecords p99 ms" "$(field $A getrecords p99_ms)" "$(field $B getrecords p99_ms)"
row "errors (all modes)" "$(error_total $A)" "$(error_total $B)"
row "peak RSS MB (VmHWM)" "$(peak_rss $A)" "$(peak_rss $B)" "<=64"
row "RSS MB after getrecords" "$(field $A getrecords rss_mb)" "$(field $B getrecords rss_mb)"
echo
echo "raw kbench output and server logs: $LOG_DIR/"
if [[ $FAILED != 0 ]]; then
    echo "run.sh: a server failed to start or a benchmark could not run (see above)" >&2
    exit 1
fi
