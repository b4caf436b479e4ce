#!/usr/bin/env bash
# Warm 1 MiB .nupkg hits with cache.verify_reads on and off, side by side in
# one run: the cost of checking every read against its XXH3-128.
#
#   bash benches/verify_reads.sh            # 64 connections, 10 s per round
#   CONNS=256 SECONDS_PER_ROUND=5 ROUNDS=3 bash benches/verify_reads.sh
#   BIG_MB=8 bash benches/verify_reads.sh   # a package read from its file
#
# Packages up to 4 MiB are kept in memory once hot, verified when they are
# read in: with the default 1 MiB payload both settings serve from memory.
# BIG_MB=8 measures the check on every read from the file.
#
# Needs wrk (Debian: apt-get install wrk), python3 and ../shared/e2e beside
# the clone (its upstream.py serves the package). Fails on any non-2xx
# answer or socket error, for either setting.
set -euo pipefail
cd "$(dirname "$0")/.."
E2E=../shared/e2e
CONNS=${CONNS:-64}
BIG_MB=${BIG_MB:-1}
SECS=${SECONDS_PER_ROUND:-10}
ROUNDS=${ROUNDS:-2}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release -q
python3 "$E2E/make-packages.py" "$work/corpus" --big-mb "$BIG_MB" >/dev/null 2>"$work/corpus.log"
python3 "$E2E/upstream.py" --port 0 --data "$work/corpus" --info "$work/up.json" >"$work/up.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/up.json" ] && break; sleep 0.1; done
index=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["index"])' "$work/up.json")
path=/v3/flatcontainer/nucache.sample.big/1.0.0/nucache.sample.big.1.0.0.nupkg

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start MODE -> sets port
start() {
  port=$(free_port)
  NUCACHE_LISTEN="127.0.0.1:$port" NUCACHE_UPSTREAM__SERVICE_INDEX="$index" \
  NUCACHE_CACHE__DIR="$work/cache-$1" NUCACHE_CACHE__VERIFY_READS="$1" \
  NUCACHE_CACHE__SCRUB_INTERVAL=0s RUST_LOG=warn \
    target/release/nucache >"$work/nucache-$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  # Warm: the first request fetches it; wait until it is a HIT.
  curl -sf -o /dev/null "http://127.0.0.1:$port$path"
  for _ in $(seq 100); do
    [ "$(curl -sI "http://127.0.0.1:$port$path" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}')" = HIT ] && break
    sleep 0.05
  done
}

declare -A ports
for mode in true false; do start "$mode"; ports[$mode]=$port; done

printf '%-14s %5s %6s %10s %9s %9s %9s %7s\n' verify_reads conns round "req/s" "MB/s" "p50" "p99" errors
for round in $(seq "$ROUNDS"); do
  for mode in true false; do
    out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" --latency "http://127.0.0.1:${ports[$mode]}$path")
    rps=$(awk '/^Requests\/sec/{print $2}' <<<"$out")
    mbs=$(awk '/^Transfer\/sec/{v=$2; if (v ~ /GB/) {sub("GB","",v); v*=1024} else sub("MB","",v); print v}' <<<"$out")
    p50=$(awk '$1=="50%"{print $2}' <<<"$out")
    p99=$(awk '$1=="99%"{print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/{print $NF}' <<<"$out"); non2xx=${non2xx:-0}
    sockerr=$(awk '/Socket errors/{n=0; for (f = 3; f <= NF; f++) if ($f ~ /^[0-9]+,?$/) n += $f; print n}' <<<"$out"); sockerr=${sockerr:-0}
    errors=$((non2xx + sockerr))
    printf '%-14s %5s %6s %10s %9s %9s %9s %7s\n' "$mode" "$CONNS" "$round" "$rps" "$mbs" "$p50" "$p99" "$errors"
    if [ "$errors" != 0 ]; then echo "errors in the run above:" >&2; echo "$out" >&2; exit 1; fi
  done
done
