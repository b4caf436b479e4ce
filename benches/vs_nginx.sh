#!/usr/bin/env bash
# nucache against nginx serving byte-identical copies of the same responses as
# static files, side by side in one run (issue 11).
#
#   bash benches/vs_nginx.sh                 # the whole run (about 6.5 minutes after the build)
#   bash benches/vs_nginx.sh --smoke         # 1 s per cell, 64 connections, no cold runs (~20 s; CI)
#   bash benches/vs_nginx.sh --out FILE      # also write the table to FILE
#
# What it does: builds the release nucache; starts ../shared/e2e/upstream.py
# with a corpus holding a ~2 KiB, a 1 MiB and a 50 MiB .nupkg; starts nucache
# in front of it and warms five responses until each answers X-Cache: HIT;
# copies the exact bytes nucache sends into a directory that Debian's nginx
# (nginx-light: 2 workers, sendfile on, access_log off) serves with the same
# Content-Type and Content-Encoding, and checks every URL gives 200 and the
# same SHA-256 on both; then drives both with wrk, cell by cell (nucache,
# then nginx), and records nucache's peak RSS and CPU seconds over those warm
# runs. Last, cold misses: a 50 MiB package through a fresh nucache against a
# throttled upstream (benches/throttle_relay.py), against the same download
# straight from the throttled upstream. Prints one markdown table.
#
# Two upstreams (issue 19): a second upstream.py serves Nucache.Second.Only
# and versions of its own of two ids the first has; a second nucache fronts
# both ([upstreams.first] priority 1, [upstreams.second] priority 10), and
# three more rows measure it (against nginx serving its exact bytes too):
# the merged version list, the merged gz registration index and a .nupkg of
# the second upstream. A last table sets each beside its one-upstream row.
#
# Any non-2xx answer, socket error or short body, from either server, fails
# the run (wrk's output is printed).
#
# Settings (environment):
#   SECONDS_PER_CELL      wrk duration per cell and server (10; smoke: 1)
#   CONNS                 connection counts for every row but 50 MiB ("1 64 256"; smoke: 64)
#   BIG_CONNS             connection counts for the 50 MiB row ("1 64 256"; smoke: 64)
#   BIG_SECONDS_PER_CELL  duration of the 50 MiB cells (15: at 256 connections one
#                         round of 50 MiB downloads takes ~10 s; smoke: SECONDS_PER_CELL)
#   WRK_THREADS           wrk threads (2; 1 for a single connection)
#   BIG_MB                size of the big package in MiB (50)
#   THROTTLE_MIB          upstream bandwidth for the cold runs, MiB/s (8)
#   COLD_RUNS             cold runs per path, medians reported (3; smoke: 0)
#   PAIR_ROUNDS           rounds of the two-upstream comparison (3; smoke: 1): each
#                         two-upstream row and its one-upstream row, alternately,
#                         PAIR_SECONDS (5; smoke: SECONDS_PER_CELL) each; medians
#   KEEP=1                keep the work directory (logs, corpus, nginx config)
#
# Needs wrk, curl, python3, cargo, nginx (Debian: apt-get install wrk curl
# nginx-light; when run as root, missing wrk/nginx are installed) and
# ../shared/e2e beside the clone.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
E2E=${E2E:-$ROOT/../shared/e2e}

SMOKE=0
OUT=
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) SMOKE=1 ;;
    --out) OUT=${2:?--out needs a file}; shift ;;
    --out=*) OUT=${1#--out=} ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ -n "$OUT" ]; then
  case $OUT in /*) ;; *) OUT="$PWD/$OUT" ;; esac
fi

if [ "$SMOKE" = 1 ]; then
  SECS=${SECONDS_PER_CELL:-1}
  CONNS=${CONNS:-64}
  BIG_CONNS=${BIG_CONNS:-64}
  COLD_RUNS=${COLD_RUNS:-0}
  PAIR_ROUNDS=${PAIR_ROUNDS:-1}
  PAIR_SECS=${PAIR_SECONDS:-$SECS}
else
  SECS=${SECONDS_PER_CELL:-10}
  CONNS=${CONNS:-1 64 256}
  BIG_CONNS=${BIG_CONNS:-1 64 256}
  COLD_RUNS=${COLD_RUNS:-3}
  PAIR_ROUNDS=${PAIR_ROUNDS:-3}
  PAIR_SECS=${PAIR_SECONDS:-5}
fi
if [ "$SMOKE" = 1 ]; then BIG_SECS=${BIG_SECONDS_PER_CELL:-$SECS}; else BIG_SECS=${BIG_SECONDS_PER_CELL:-15}; fi
WRK_THREADS=${WRK_THREADS:-2}
BIG_MB=${BIG_MB:-50}
THROTTLE_MIB=${THROTTLE_MIB:-8}
T0=$SECONDS

die() { echo "vs_nginx: $*" >&2; exit 1; }
say() { echo "== $* ($((SECONDS - T0)) s)" >&2; }

# ---- tools
need_pkg() { # COMMAND DEBIAN-PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing $2"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; } ||
      die "could not install $2"
  fi
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed (as root: apt-get update && apt-get install -y $2)"
}
PATH=$PATH:/usr/sbin
need_pkg wrk wrk
need_pkg nginx nginx-light
need_pkg curl curl
command -v python3 >/dev/null || die "python3 is not installed"
[ -f "$E2E/upstream.py" ] || die "no $E2E/upstream.py (../shared/e2e must sit beside the clone)"

work=$(mktemp -d)
pids=()
cleanup() {
  local rc=$? f
  if [ "$rc" != 0 ]; then
    for f in "$work"/nucache-*.log "$work/nginx/error.log" "$work/up.log" "$work/relay.log"; do
      [ -s "$f" ] && { echo "--- last lines of ${f#"$work"/}:" >&2; tail -n 20 "$f" >&2; }
    done
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json_get() { # FILE KEY... -> the value
  python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    d = d[k]
print(d)' "$@"
}
wait_for_file() { for _ in $(seq 300); do [ -s "$1" ] && return 0; sleep 0.1; done; die "timed out waiting for $1"; }
header() { tr -d '\r' <"$1" | awk -F': ' -v h="$2" 'tolower($1)==h{v=$2} END{print v}'; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
# utime+stime, in seconds, of the given processes
cpu_seconds() {
  local t=0 p
  for p in "$@"; do t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}'))); done
  awk -v t="$t" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", t / hz}'
}
kib_to_mib() { awk -v k="$1" 'BEGIN{printf "%.1f", k / 1024}'; }
status_kib() { awk -v f="$2:" '$1==f{print $2}' "/proc/$1/status"; }

say "cargo build --release"
cargo build --release -q
NUCACHE=$ROOT/target/release/nucache
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- corpus: the e2e corpus with the big package, plus a 1 MiB one
say "corpus (big package: $BIG_MB MiB)"
python3 "$E2E/make-packages.py" "$work/corpus" --big-mb "$BIG_MB" >/dev/null 2>"$work/corpus.log"
python3 - "$E2E/make-packages.py" "$work/corpus" <<'EOF'
import importlib.util, json, os, sys
spec = importlib.util.spec_from_file_location("make_packages", sys.argv[1])
mp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mp)
out = sys.argv[2]
pid, ver = "Nucache.Bench.Mid", "1.0.0"
data = mp.build_nupkg(pid, ver, [], big_mb=1)
name = mp.file_name(pid, ver)
mp.write_if_changed(os.path.join(out, name), data)
manifest_path = os.path.join(out, "corpus.json")
with open(manifest_path) as f:
    manifest = json.load(f)
manifest["packages"].append({"id": pid, "version": ver, "file": name, "listed": True,
                             "sha512_size": len(data)})
mp.write_if_changed(manifest_path, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
EOF

python3 "$E2E/upstream.py" --port 0 --data "$work/corpus" --info "$work/up.json" >"$work/up.log" 2>&1 &
pids+=($!)
wait_for_file "$work/up.json"
UP_INDEX=$(json_get "$work/up.json" index)
UP_API_PORT=$(json_get "$work/up.json" ports api)

# ---- the second upstream: a package of its own, and versions of its own
# of two ids the first upstream has (so their lists and registrations merge)
second=$work/corpus-second
entries=()
for spec in Nucache.Second.Only:1.0.0 Nucache.Sample.Many:9.0.0-second Nucache.Sample.Core:9.0.0-second; do
  file=$(basename "$(python3 "$E2E/make-packages.py" "$second" --one "${spec%%:*}" "${spec#*:}")")
  entries+=("{\"id\": \"${spec%%:*}\", \"version\": \"${spec#*:}\", \"file\": \"$file\", \"listed\": true}")
done
(IFS=,; echo "{\"packages\": [${entries[*]}]}") >"$second/corpus.json"
python3 "$E2E/upstream.py" --port 0 --data "$second" --info "$work/up2.json" >"$work/up2.log" 2>&1 &
pids+=($!)
wait_for_file "$work/up2.json"
UP2_INDEX=$(json_get "$work/up2.json" index)

# start_nucache NAME SERVICE_INDEX [SECOND_INDEX] -> sets NC_PID, NC_URL
# (with SECOND_INDEX: [upstreams.first] priority 1 and [upstreams.second] priority 10)
start_nucache() {
  local port upstreams=(NUCACHE_UPSTREAM__SERVICE_INDEX="$2")
  port=$(free_port)
  if [ -n "${3:-}" ]; then
    upstreams=(NUCACHE_UPSTREAMS__FIRST__SERVICE_INDEX="$2" NUCACHE_UPSTREAMS__FIRST__PRIORITY=1
      NUCACHE_UPSTREAMS__SECOND__SERVICE_INDEX="$3" NUCACHE_UPSTREAMS__SECOND__PRIORITY=10)
  fi
  env "${upstreams[@]}" NUCACHE_LISTEN="127.0.0.1:$port" \
  NUCACHE_CACHE__DIR="$work/cache-$1" NUCACHE_CACHE__SCRUB_INTERVAL=0s \
  NUCACHE_TTL__VERSIONS=1h NUCACHE_TTL__REGISTRATION=1h RUST_LOG=warn \
    "$NUCACHE" >"$work/nucache-$1.log" 2>&1 &
  NC_PID=$!
  pids+=("$NC_PID")
  NC_URL="http://127.0.0.1:$port"
  for _ in $(seq 300); do
    curl -sf -o /dev/null "$NC_URL/health" && return 0
    kill -0 "$NC_PID" 2>/dev/null || { cat "$work/nucache-$1.log" >&2; die "nucache exited"; }
    sleep 0.1
  done
  die "nucache did not answer /health"
}
# alive PID NAME -> "NAME is running" or how it ended (a server that died
# mid-cell shows in wrk as refused reconnects, i.e. write errors)
alive() {
  local rc=0
  kill -0 "$1" 2>/dev/null && { echo "$2 is still running"; return; }
  wait "$1" 2>/dev/null || rc=$?
  if [ "$rc" -gt 128 ]; then echo "$2 was killed by signal $((rc - 128))"; else echo "$2 exited with status $rc"; fi
}
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# ---- the responses measured
start_nucache warm "$UP_INDEX"
WARM_PID=$NC_PID
WARM_URL=$NC_URL
IDLE_RSS=$(status_kib "$WARM_PID" VmRSS)
start_nucache two "$UP_INDEX" "$UP2_INDEX"
TWO_PID=$NC_PID
TWO_URL=$NC_URL
# The registration hive NuGet 4.3+ uses, as nucache's service index names it.
curl -sf "$WARM_URL/v3/index.json" >"$work/index.json"
REG_BASE=$(python3 -c '
import json, sys
for r in json.load(open(sys.argv[1]))["resources"]:
    if r["@type"] == "RegistrationsBaseUrl/3.6.0":
        print(r["@id"]); break' "$work/index.json")
[ -n "$REG_BASE" ] || die "no RegistrationsBaseUrl/3.6.0 in nucache's service index"
REG_PATH=/${REG_BASE#http://*/}

NAMES=("\`.nupkg\` 2 KiB" "\`.nupkg\` 1 MiB" "\`.nupkg\` $BIG_MB MiB" 'version list' 'gz registration index'
  'merged version list (2 upstreams)' 'merged gz registration index (2 upstreams)' "\`.nupkg\` of the second upstream (2 upstreams)")
PATHS=(
  /v3/flatcontainer/nucache.sample.app/1.1.0/nucache.sample.app.1.1.0.nupkg
  /v3/flatcontainer/nucache.bench.mid/1.0.0/nucache.bench.mid.1.0.0.nupkg
  /v3/flatcontainer/nucache.sample.big/1.0.0/nucache.sample.big.1.0.0.nupkg
  /v3/flatcontainer/nucache.sample.many/index.json
  "${REG_PATH}nucache.sample.core/index.json"
  /v3/flatcontainer/nucache.sample.many/index.json
  "${REG_PATH}nucache.sample.core/index.json"
  /v3/flatcontainer/nucache.second.only/1.0.0/nucache.second.only.1.0.0.nupkg
)
GZIP=(0 0 0 0 1 0 1 0)
# Rows served by the nucache of two upstreams, and the one-upstream row each
# is set beside (the second upstream's .nupkg is ~2 KiB, like row 0).
TWO=(0 0 0 0 0 1 1 1)
PAIR=(- - - - - 3 4 0)
BIG=2
# enc I: sets ENC to the request headers for response I
enc() { ENC=(); if [ "${GZIP[$1]}" = 1 ]; then ENC=(-H 'Accept-Encoding: gzip'); fi; }
# nc_url I, nc_pid I: the nucache serving row I; www_path I: where nginx serves its copy
nc_url() { if [ "${TWO[$1]}" = 1 ]; then echo "$TWO_URL"; else echo "$WARM_URL"; fi; }
nc_pid() { if [ "${TWO[$1]}" = 1 ]; then echo "$TWO_PID"; else echo "$WARM_PID"; fi; }
www_path() { if [ "${TWO[$1]}" = 1 ]; then echo "/two${PATHS[$1]}"; else echo "${PATHS[$1]}"; fi; }

say "warming ${#PATHS[@]} responses through nucache"
for i in "${!PATHS[@]}"; do
  enc "$i"
  curl -sf -o /dev/null "${ENC[@]}" "$(nc_url "$i")${PATHS[$i]}" || die "GET ${PATHS[$i]} failed"
  state=
  for _ in $(seq 300); do
      curl -sf -o /dev/null -D "$work/h" "${ENC[@]}" "$(nc_url "$i")${PATHS[$i]}" || true
    state=$(header "$work/h" x-cache)
    [ "$state" = HIT ] && break
    sleep 0.1
  done
  [ "$state" = HIT ] || die "${PATHS[$i]} never became a HIT (last X-Cache: $state)"
done

# ---- byte-identical copies for nginx
www=$work/www
declare -a SIZES CTYPES CENCS
declare -A HEAD_BYTES # server name and response index -> size of its response head
for i in "${!PATHS[@]}"; do
  mkdir -p "$www$(dirname "$(www_path "$i")")"
  enc "$i"
  curl -sf -o "$www$(www_path "$i")" -D "$work/h" "${ENC[@]}" "$(nc_url "$i")${PATHS[$i]}"
  SIZES[i]=$(stat -c %s "$www$(www_path "$i")")
  CTYPES[i]=$(header "$work/h" content-type)
  CENCS[i]=$(header "$work/h" content-encoding)
  [ "${GZIP[$i]}" = 0 ] || [ "${CENCS[$i]}" = gzip ] || die "${PATHS[$i]}: nucache did not answer gzip"
done

NGINX_PORT=$(free_port)
NGINX_URL=http://127.0.0.1:$NGINX_PORT
mkdir -p "$work/nginx"
{
  # A root master's workers run as nobody, who cannot enter the mktemp directory.
  [ "$(id -u)" = 0 ] && echo "user root;"
  cat <<EOF
worker_processes 2;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  types {}
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $www;
EOF
  for i in "${!PATHS[@]}"; do
    echo "    location = $(www_path "$i") {"
    echo "      default_type \"${CTYPES[$i]}\";"
    [ -z "${CENCS[$i]}" ] || echo "      add_header Content-Encoding ${CENCS[$i]};"
    echo "    }"
  done
  echo "  }"
  echo "}"
} >"$work/nginx/nginx.conf"
nginx -e "$work/nginx/error.log" -p "$work/nginx" -c "$work/nginx/nginx.conf" >"$work/nginx/stdout.log" 2>&1 &
NGINX_PID=$!
pids+=("$NGINX_PID")
for _ in $(seq 100); do curl -s -o /dev/null "$NGINX_URL/" && break; sleep 0.1; done
kill -0 "$NGINX_PID" 2>/dev/null || { cat "$work/nginx/error.log" "$work/nginx/stdout.log" >&2; die "nginx did not start"; }
nginx_pids() { echo "$NGINX_PID"; pgrep -P "$NGINX_PID" || true; }

say "checking both servers answer 200 with the same bytes"
for i in "${!PATHS[@]}"; do
  enc "$i"
  for server in nucache nginx; do
    url=$(nc_url "$i")${PATHS[$i]}; [ $server = nginx ] && url=$NGINX_URL$(www_path "$i")
      code=$(curl -s -o "$work/check-$server" -D "$work/h-$server" -w '%{http_code}' "${ENC[@]}" "$url")
    [ "$code" = 200 ] || die "$server answered $code to ${PATHS[$i]}"
    HEAD_BYTES[$server$i]=$(stat -c %s "$work/h-$server")
  done
  [ "$(sha "$work/check-nucache")" = "$(sha "$work/check-nginx")" ] || die "${PATHS[$i]}: nginx's bytes differ from nucache's"
  for h in content-type content-encoding content-length; do
    [ "$(header "$work/h-nucache" $h)" = "$(header "$work/h-nginx" $h)" ] ||
      die "${PATHS[$i]}: $h differs: nucache '$(header "$work/h-nucache" $h)', nginx '$(header "$work/h-nginx" $h)'"
  done
done

# ---- warm runs
# wrk's own summary, exact: requests, bytes, microseconds, error counts, and
# the latency percentiles (us). A done() hook costs nothing per request.
cat >"$work/summary.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d %.1f %.1f\n",
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
EOF
# run_wrk SERVER INDEX CONNS SECONDS -> one line: req/s MiB/s p50_ms p99_ms
run_wrk() {
  local server=$1 i=$2 conns=$3 secs=$4 threads=$WRK_THREADS timeout=10s out url
  url=$(nc_url "$i")${PATHS[$i]}
  [ "$server" = nginx ] && url=$NGINX_URL$(www_path "$i")
  [ "$conns" -lt "$threads" ] && threads=$conns
  [ "$i" = "$BIG" ] && timeout=60s
  enc "$i"
  out=$(wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout "$timeout" --latency -s "$work/summary.lua" \
    "${ENC[@]}" "$url")
  # The smallest whole answer: the body and the head seen in the check (a few
  # bytes of slack: nucache's X-Request-Id grows).
  awk -v size="$((SIZES[i] + HEAD_BYTES[$server$i] - 8))" '
    $1 == "RESULT" { n = $2; bytes = $3; us = $4; bad = $5 + $6 + $7 + $8 + $9; p50 = $10; p99 = $11; seen = 1 }
    END {
      if (!seen || us <= 0) exit 1
      # Every answer must carry the whole body (a 3xx or a short answer would
      # not show in wrk'"'"'s error counts), and a cell with no complete answer
      # must at least have read one answer'"'"'s worth.
      if (bytes < n * size || (n == 0 && bytes < size)) bad += 1
      if (bad) exit 1
      if (n == 0) printf "0 %.1f - -\n", bytes / 1048576 / (us / 1e6)
      else printf "%.1f %.1f %.2f %.2f\n", n / (us / 1e6), bytes / 1048576 / (us / 1e6), p50 / 1000, p99 / 1000
    }' <<<"$out" || { echo "$out" >&2; return 1; }
}

rows=$work/rows.tsv
: >"$rows"
# shellcheck disable=SC2207
nginx_list=($(nginx_pids))
NC_CPU0=$(cpu_seconds "$WARM_PID" "$TWO_PID")
NGINX_CPU0=$(cpu_seconds "${nginx_list[@]}")
# Peak RSS per cell: clear_refs 5 resets VmHWM to the current RSS.
reset_peak() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null; }
reset_peak "$WARM_PID" || say "cannot reset VmHWM: peak RSS includes the warm-up"
PEAK_RSS=0
for i in "${!PATHS[@]}"; do
  conns_list=$CONNS secs=$SECS
  [ "$i" = "$BIG" ] && conns_list=$BIG_CONNS secs=$BIG_SECS
  for c in $conns_list; do
    say "wrk ${NAMES[$i]}, $c connections, ${secs}s each"
    pid=$(nc_pid "$i")
    reset_peak "$pid" || true
    n0=$(cpu_seconds "$pid")
    nc=$(run_wrk nucache "$i" "$c" "$secs") || die "errors from nucache on ${PATHS[$i]} at $c connections (wrk output above; $(alive "$pid" nucache))"
    n1=$(cpu_seconds "$pid")
    peak=$(status_kib "$pid" VmHWM)
    [ "$peak" -gt "$PEAK_RSS" ] && PEAK_RSS=$peak
    g0=$(cpu_seconds "${nginx_list[@]}")
    ng=$(run_wrk nginx "$i" "$c" "$secs") || die "errors from nginx on ${PATHS[$i]} at $c connections (wrk output above; $(alive "$NGINX_PID" nginx))"
    g1=$(cpu_seconds "${nginx_list[@]}")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "${NAMES[$i]}" "$c" "$nc" "$ng" \
      "$(awk -v a="$n0" -v b="$n1" 'BEGIN{printf "%.1f", b - a}')" \
      "$(awk -v a="$g0" -v b="$g1" 'BEGIN{printf "%.1f", b - a}')" "$(kib_to_mib "$peak")" "$i" >>"$rows"
  done
done
# ---- two upstreams beside one: each pair measured alternately, so that
# the machine's swings (±30 % between cells) fall on both sides alike.
pairs=$work/pairs.tsv
: >"$pairs"
for i in "${!PATHS[@]}"; do
  one=${PAIR[$i]}
  [ "$one" = - ] && continue
  for c in $CONNS; do
    for round in $(seq "$PAIR_ROUNDS"); do
      say "pair ${NAMES[$i]} / ${NAMES[$one]}, $c connections, round $round of $PAIR_ROUNDS"
      a=$(run_wrk nucache "$one" "$c" "$PAIR_SECS") || die "errors from nucache on ${PATHS[$one]}"
      b=$(run_wrk nucache "$i" "$c" "$PAIR_SECS") || die "errors from the nucache of two upstreams on ${PATHS[$i]}"
      printf '%s\t%s\t%s\t%s\n' "$i" "$c" "${a%% *}" "${b%% *}" >>"$pairs"
    done
  done
done
END_RSS=$(status_kib "$WARM_PID" VmRSS)
NC_CPU=$(awk -v a="$NC_CPU0" -v b="$(cpu_seconds "$WARM_PID" "$TWO_PID")" 'BEGIN{printf "%.1f", b - a}')
NGINX_CPU=$(awk -v a="$NGINX_CPU0" -v b="$(cpu_seconds "${nginx_list[@]}")" 'BEGIN{printf "%.1f", b - a}')
for i in "${!PATHS[@]}"; do
  enc "$i"
  curl -sf -o /dev/null -D "$work/h" "${ENC[@]}" "$(nc_url "$i")${PATHS[$i]}"
  [ "$(header "$work/h" x-cache)" = HIT ] || die "${PATHS[$i]} was no longer a HIT after the runs"
done
stop_pid "$NGINX_PID"
stop_pid "$WARM_PID"
stop_pid "$TWO_PID"

# ---- cold misses through a throttled upstream
cold=$work/cold.tsv
: >"$cold"
if [ "$COLD_RUNS" -gt 0 ]; then
  python3 "$ROOT/benches/throttle_relay.py" --target "127.0.0.1:$UP_API_PORT" --rate-mib "$THROTTLE_MIB" \
    --info "$work/relay.json" >"$work/relay.log" 2>&1 &
  pids+=($!)
  wait_for_file "$work/relay.json"
  RELAY=$(json_get "$work/relay.json" origin)
  big_path=${PATHS[$BIG]}
  # The same package straight from the upstream: its own flat container base.
  curl -sf "$RELAY/v3/index.json" >"$work/up-index.json"
  UP_FLAT=$(python3 -c '
import json, sys
for r in json.load(open(sys.argv[1]))["resources"]:
    if r["@type"] == "PackageBaseAddress/3.0.0":
        print(r["@id"].rstrip("/")); break' "$work/up-index.json")
  case $UP_FLAT in "$RELAY"/*) ;; *) die "the relay did not rewrite the upstream's flat container base ($UP_FLAT)" ;; esac
  big_sha=$(sha "$www$big_path")
  # fetch LABEL URL EXPECTED-X-CACHE -> appends "LABEL ttfb total"
  fetch() {
    local t
    t=$(curl -s -o "$work/cold.bin" -D "$work/h" -w '%{http_code} %{time_starttransfer} %{time_total}' "$2")
    [ "${t%% *}" = 200 ] || die "cold $1: HTTP ${t%% *}"
    [ "$(sha "$work/cold.bin")" = "$big_sha" ] || die "cold $1: wrong bytes"
    [ -z "$3" ] || [ "$(header "$work/h" x-cache)" = "$3" ] || die "cold $1: X-Cache $(header "$work/h" x-cache), not $3"
    echo "$1 ${t#* }" >>"$cold"
  }
  for run in $(seq "$COLD_RUNS"); do
    say "cold run $run of $COLD_RUNS ($BIG_MB MiB at $THROTTLE_MIB MiB/s, twice)"
    fetch direct "$UP_FLAT/${big_path#/v3/flatcontainer/}" ""
    start_nucache "cold-$run" "$RELAY/v3/index.json"
    curl -sf -o /dev/null "$NC_URL/v3/index.json"
    fetch nucache "$NC_URL$big_path" MISS
    stop_pid "$NC_PID"
  done
fi

# ---- the table
median() { sort -n | awk '{v[NR] = $1} END{if (NR) print v[int((NR + 1) / 2)]}'; }
table() {
  echo "nucache $COMMIT vs nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), $(date -u '+%Y-%m-%d %H:%M UTC')," \
    "$(nproc) x $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)," \
    "load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end;" \
    "wrk $SECS s per cell and server (${BIG_MB} MiB: $BIG_SECS s)$([ "$SMOKE" = 1 ] && echo ', smoke run')."
  echo
  echo "| warm hit | conns | nucache req/s | nginx req/s | ratio | nucache / nginx MiB/s | p50 nucache / nginx ms | p99 nucache / nginx ms | CPU s nucache / nginx | nucache peak RSS MiB |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  awk -F'\t' '
    function thousands(v,   s) { s = sprintf("%d", v + 0.5)
      while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s)
      return s }
    { split($3, a, " "); split($4, b, " ")
      printf "| %s | %s | %s | %s | %.2f | %s / %s | %s / %s | %s / %s | %s / %s | %s |\n",
        $1, $2, thousands(a[1]), thousands(b[1]), (b[1] > 0 ? a[1] / b[1] : 0),
        a[2], b[2], a[3], b[3], a[4], b[4], $5, $6, $7 }' "$rows"
  echo
  echo "| two upstreams, warm hit (median of $PAIR_ROUNDS, ${PAIR_SECS} s each, alternating) | conns | two upstreams req/s | one upstream row | one upstream req/s | two / one |"
  echo "|---|---|---|---|---|---|"
  local i c
  for i in "${!PATHS[@]}"; do
    [ "${PAIR[$i]}" = - ] && continue
    for c in $CONNS; do
      local one two
      one=$(awk -F'\t' -v i="$i" -v c="$c" '$1==i && $2==c {print $3}' "$pairs" | median)
      two=$(awk -F'\t' -v i="$i" -v c="$c" '$1==i && $2==c {print $4}' "$pairs" | median)
      awk -v n="${NAMES[$i]}" -v c="$c" -v a="$one" -v b="$two" -v m="${NAMES[${PAIR[$i]}]}" \
        'BEGIN{printf "| %s | %s | %.0f | %s | %.0f | %.2f |\n", n, c, b, m, a, (a > 0 ? b / a : 0)}'
    done
  done
  echo
  echo "nucache RSS: $(kib_to_mib "$IDLE_RSS") MiB idle at start, peak $(kib_to_mib "$PEAK_RSS") MiB over the warm runs" \
    "(VmHWM, reset before each cell), $(kib_to_mib "$END_RSS") MiB after them; CPU over the warm runs: nucache $NC_CPU s, nginx $NGINX_CPU s (all workers)."
  if [ -s "$cold" ]; then
    local dt dn nt nn
    dt=$(awk '$1=="direct"{print $2 * 1000}' "$cold" | median)
    dn=$(awk '$1=="direct"{print $3}' "$cold" | median)
    nt=$(awk '$1=="nucache"{print $2 * 1000}' "$cold" | median)
    nn=$(awk '$1=="nucache"{print $3}' "$cold" | median)
    echo
    echo "| cold $BIG_MB MiB miss, upstream at $THROTTLE_MIB MiB/s (median of $COLD_RUNS) | TTFB ms | total s |"
    echo "|---|---|---|"
    printf '| direct from the upstream | %.1f | %.2f |\n' "$dt" "$dn"
    printf '| through a fresh nucache (MISS) | %.1f | %.2f |\n' "$nt" "$nn"
    awk -v dt="$dt" -v dn="$dn" -v nt="$nt" -v nn="$nn" \
      'BEGIN{printf "| nucache - direct, nucache / direct | %+.1f | %.3fx |\n", nt - dt, nn / dn}'
  fi
}
table >"$work/table.md"
echo
cat "$work/table.md"
[ -z "$OUT" ] || cp "$work/table.md" "$OUT"
say "done"
