#!/usr/bin/env bash
# The fan-out mode of the benchmark: 4 enhanced fan-out consumers subscribed (SubscribeToShard,
# boto3) to each of 4 shards of one durable kinesd while PutRecords (100 x 100 B) runs for
# BENCH_SECONDS; the put-to-event latency (from sending the PutRecords call to a subscriber
# decoding the record; the client is Python, so its own overhead is included), delivered
# records/s, and whether every consumer received every record in order (tools/bench/fanout.py).
#
# Usage: tools/bench/fanout.sh   (run.sh calls it for BENCH_MODES containing "fanout")
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
SECS=${BENCH_SECONDS:-8}
KINESD=${KINESD_BIN:-build/kinesd}
LOG_DIR=${BENCH_LOG_DIR:-build/bench}
KBENCH=build/kbench
mkdir -p "$LOG_DIR"
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
    --register-consumer-ms 0 --no-limits >"$LOG_DIR/fanout.kinesd.log" 2>&1 &
PID=$!
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$PORT/healthcheck" >/dev/null 2>&1 && break
    sleep 0.1
done
line=$(/usr/bin/python3 tools/bench/fanout.py "http://127.0.0.1:$PORT" "$SECS" 4 4)
read -r _ put delivered p50 p99 complete <<<"$line"
echo "RESULT fanout put_records_per_s=$put delivered_records_per_s=$delivered p50_ms=$p50 p99_ms=$p99 complete=$complete"
echo
echo "Fan-out: 4 consumers x 4 shards, PutRecords 100 x 100 B for ${SECS} s (kinesd)"
printf '  %-40s %12s %10s\n' "" "kinesd" "target"
printf '  %-40s %12s %10s\n' "records/s put" "$put" ""
printf '  %-40s %12s %10s\n' "records/s delivered (all subscriptions)" "$delivered" ""
printf '  %-40s %12s %10s\n' "put-to-event p50 ms" "$p50" "<10"
printf '  %-40s %12s %10s\n' "put-to-event p99 ms" "$p99" ""
printf '  %-40s %12s %10s\n' "every consumer got every record" "$complete" "yes"
[[ $complete == yes ]]
