#!/usr/bin/env bash
# Reproducible xDS performance scenarios: a synthetic mesh, `rudder serve` on
# it, simulated sidecars (rudder-loadgen proxies) and a churn driver.
#
#   e2e/perf/run.sh SCENARIO      cold | one-endpoint | churn | service-edit |
#                                 vs-edit | idle | delta-vs-sotw | scale10k | all
#
# Environment overrides (defaults depend on the scenario, see `defaults`):
#   SERVICES ENDPOINTS NAMESPACES PROXIES RATE DURATION RAMP CONNECTIONS
#   DEBOUNCE (100ms) SEED (1) TIMEOUT (seconds for each goal, 600)
#   VS_SHARE DR_SHARE SIDECAR_SHARE (0.1 0.1 0) PROFILE (release|debug)
#   OUT (results directory; default a fresh /tmp/rudder-perf.XXXXXX)
#   BIN_DIR (a directory holding prebuilt rudder and rudder-loadgen: no cargo
#   build, PROFILE ignored; the e2e test runs the scenarios this way)
#
# Everything a run produces stays in OUT: reports (JSON), rudder.csv and
# loadgen-*.csv (RSS and CPU once a second), metrics snapshots, logs, and
# commands.txt with the exact commands. Run it on a quiet machine: rudder,
# the load generator and the churn driver share it, and the figures say so.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD

SCENARIO=${1:-}
SCENARIOS="cold one-endpoint churn service-edit vs-edit idle delta-vs-sotw scale10k"

usage() {
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

defaults() {
  local s=$1
  D_SERVICES=1000 D_ENDPOINTS=10 D_PROXIES=1000 D_RATE=100 D_DURATION=60 D_RAMP=0
  case $s in
    cold | one-endpoint | churn | service-edit | vs-edit | idle) ;;
    delta-vs-sotw) D_RATE=50 D_DURATION=20 ;;
    scale10k) D_PROXIES=10000 D_RAMP=2000 ;;
    *) usage ;;
  esac
  SERVICES=${SERVICES_ENV:-$D_SERVICES}
  ENDPOINTS=${ENDPOINTS_ENV:-$D_ENDPOINTS}
  PROXIES=${PROXIES_ENV:-$D_PROXIES}
  RATE=${RATE_ENV:-$D_RATE}
  DURATION=${DURATION_ENV:-$D_DURATION}
  RAMP=${RAMP_ENV:-$D_RAMP}
}

# Remember what the caller set, so `all` re-applies defaults per scenario.
SERVICES_ENV=${SERVICES:-} ENDPOINTS_ENV=${ENDPOINTS:-} PROXIES_ENV=${PROXIES:-}
RATE_ENV=${RATE:-} DURATION_ENV=${DURATION:-} RAMP_ENV=${RAMP:-}
NAMESPACES=${NAMESPACES:-10}
DEBOUNCE=${DEBOUNCE:-100ms}
SEED=${SEED:-1}
TIMEOUT=${TIMEOUT:-600}
VS_SHARE=${VS_SHARE:-0.1} DR_SHARE=${DR_SHARE:-0.1} SIDECAR_SHARE=${SIDECAR_SHARE:-0}
PROFILE=${PROFILE:-release}
CONNECTIONS=${CONNECTIONS:-}

[ -n "$SCENARIO" ] || usage
[ "$SCENARIO" = all ] || defaults "$SCENARIO"

OUT=${OUT:-$(mktemp -d /tmp/rudder-perf.XXXXXX)}
mkdir -p "$OUT"
COMMANDS=$OUT/commands.txt
: >"$COMMANDS"
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- helpers

# Only processes this script started are ever stopped, by their PID, and
# only while they are still its children (a dead one's PID may be reused).
PIDS=()
stop_child() {
  local pid=$1 sig=${2:-TERM} stat
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  set -- $stat
  [ "$2" = "$$" ] && kill "-$sig" "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    stop_child "$pid"
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# Logs a command to commands.txt (the summary prints them).
log_cmd() {
  printf '%q ' "$@" >>"$COMMANDS"
  printf '\n' >>"$COMMANDS"
}

# Logs a command and runs it. Background processes are started without this
# wrapper (log_cmd, then the command itself), so $! is their own PID.
run() {
  log_cmd "$@"
  "$@"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# jget FILE a.b.c -> the JSON value (or "-"), numbers rounded for reading.
jget() {
  python3 - "$1" "$2" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v.get(k) if isinstance(v, dict) else None
if v is None:
    print("-")
elif isinstance(v, float):
    print(f"{v:.3f}".rstrip("0").rstrip("."))
else:
    print(json.dumps(v) if isinstance(v, (dict, list)) else v)
PY
}

# "p50 A ms, p90 B, p99 C, max D (n=N)" from a latency summary in a report.
lat() {
  local f=$1 p=$2
  if [ "$(jget "$f" "$p")" = "-" ]; then echo "-"; return; fi
  echo "p50 $(jget "$f" "$p.p50_ms") ms, p90 $(jget "$f" "$p.p90_ms"), p99 $(jget "$f" "$p.p99_ms"), max $(jget "$f" "$p.max_ms") (n=$(jget "$f" "$p.count"))"
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# utime+stime in seconds; fields counted after the ")" ending the command name.
cpu_s() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  echo "${stat##*) }" | awk -v hz="$CLK_TCK" '{printf "%.2f", ($12 + $13) / hz}'
}

# Samples a process's RSS and CPU every second into a CSV, with the phase.
sample() {
  local pid=$1 csv=$2 t0
  t0=$(date +%s.%N)
  echo "elapsed_s,phase,rss_kb,cpu_s" >"$csv"
  while kill -0 "$pid" 2>/dev/null; do
    printf '%s,%s,%s,%s\n' "$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN {printf "%.1f", a - b}')" "$(cat "$OUT/phase" 2>/dev/null || echo -)" \
      "$(rss_kb "$pid")" "$(cpu_s "$pid")" >>"$csv"
    sleep 1
  done
}

peak_rss_mb() { awk -F, 'NR > 1 && $3 > m {m = $3} END {printf "%.1f", m / 1024}' "$1"; }
mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

build() {
  if [ -n "${BIN_DIR:-}" ]; then
    use_prebuilt
    return
  fi
  BUILD_LABEL="$PROFILE build"
  say "building ($PROFILE) ..."
  if [ "$PROFILE" = release ]; then run cargo build --release --bins >&2; else run cargo build --bins >&2; fi
  local target
  target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  BIN=$target/$PROFILE
  [ -x "$BIN/rudder" ] && [ -x "$BIN/rudder-loadgen" ] || die "binaries missing in $BIN"
}

# BIN_DIR instead of a build: both binaries must be there, or nothing runs.
use_prebuilt() {
  BIN=$BIN_DIR
  BUILD_LABEL="prebuilt binaries from $BIN_DIR"
  local b
  for b in rudder rudder-loadgen; do
    [ -x "$BIN/$b" ] || die "BIN_DIR=$BIN_DIR has no executable $b"
  done
  say "using prebuilt binaries in $BIN (BIN_DIR; PROFILE=$PROFILE not built)"
}

# mesh NAME: a fresh synthetic mesh in $OUT/NAME.
mesh() {
  MESH=$OUT/$1
  rm -rf "$MESH"
  run "$BIN/rudder-loadgen" mesh --out "$MESH" --services "$SERVICES" --endpoints "$ENDPOINTS" \
    --namespaces "$NAMESPACES" --vs-share "$VS_SHARE" --dr-share "$DR_SHARE" \
    --sidecar-share "$SIDECAR_SHARE" --seed "$SEED"
  CHANGES=$MESH/changes.jsonl
}

# Starts rudder on $MESH and waits for /ready; samples it into $OUT/rudder-TAG.csv.
start_rudder() {
  local tag=$1
  XDS_ADDR=127.0.0.1:$(free_port)
  ADMIN=http://127.0.0.1:$(free_port)
  RUDDER_CSV=$OUT/rudder-$tag.csv
  echo "start" >"$OUT/phase"
  local cmd=("$BIN/rudder" serve --config-dir "$MESH" --xds-addr "$XDS_ADDR" --admin-addr "${ADMIN#http://}"
    --debounce "$DEBOUNCE" --log-level warn)
  log_cmd "${cmd[@]}"
  "${cmd[@]}" >"$OUT/rudder-$tag.log" 2>&1 &
  RUDDER_PID=$!
  PIDS+=("$RUDDER_PID")
  sample "$RUDDER_PID" "$RUDDER_CSV" &
  PIDS+=("$!")
  local i
  for i in $(seq 1 600); do
    curl -fsS "$ADMIN/ready" >/dev/null 2>&1 && { say "rudder ready ($XDS_ADDR, admin $ADMIN)"; return; }
    kill -0 "$RUDDER_PID" 2>/dev/null || die "rudder exited; see $OUT/rudder-$tag.log"
    sleep 0.2
  done
  die "rudder not ready after 120s"
}

stop_rudder() {
  stop_child "$RUDDER_PID"
  wait "$RUDDER_PID" 2>/dev/null || true
}

# Marks a phase: the CSVs carry it, and rudder's metrics and usage are saved.
phase() {
  echo "$1" >"$OUT/phase"
  # A missing snapshot would read as zero pushes: fail instead.
  curl -fsS "$ADMIN/metrics" >"$OUT/metrics-$TAG-$1.txt" ||
    die "could not read Rudder's metrics at $ADMIN/metrics (phase $1)"
  eval "RSS_$2=$(rss_kb "$RUDDER_PID") CPU_$2=$(cpu_s "$RUDDER_PID")"
}

# A counter's value in a metrics snapshot; 0 when absent (never incremented).
# printf: awk prints counters past 2^31 in exponent form, which bash cannot add.
metric() { awk -v m="$2" '$1 == m {v = $2} END {printf "%.0f\n", v + 0}' "$1" 2>/dev/null || echo 0; }

# Pushes and bytes per type between two metric snapshots: sets PUSHES_<type>,
# BYTES_<type> and PUSH_LINE.
pushes_between() {
  local a=$OUT/metrics-$TAG-$1.txt b=$OUT/metrics-$TAG-$2.txt t n bytes
  PUSH_LINE=""
  for t in cds eds lds rds; do
    n=$(($(metric "$b" "rudder_xds_pushes_total{type=\"$t\"}") - $(metric "$a" "rudder_xds_pushes_total{type=\"$t\"}")))
    bytes=$(($(metric "$b" "rudder_xds_push_bytes_total{type=\"$t\"}") - $(metric "$a" "rudder_xds_push_bytes_total{type=\"$t\"}")))
    PUSH_LINE+="$t $n ($bytes B)  "
    eval "PUSHES_$t=$n BYTES_$t=$bytes"
  done
}

# Rudder's own side of a change, from its /metrics histograms between two
# snapshots: snapshot publish to response sent (push latency) and to the
# proxy's ACK (convergence), p50 and p99 interpolated within the histogram's
# power-of-two buckets as Prometheus's histogram_quantile does (so within a
# factor of two at worst). The load generator's figures
# include its own decoding on the same cores; these show how soon Rudder had
# done its part. Sets RUDDER_LAT_LINE.
latency_between() {
  local a=$OUT/metrics-$TAG-$1.txt b=$OUT/metrics-$TAG-$2.txt name t line=""
  for name in push_latency convergence; do
    line+="$name:"
    for t in cds eds lds rds; do
      line+=" $t $(awk -v m="rudder_xds_${name}_seconds_bucket" -v t="type=\"$t\"" '
        function le(key) { sub(/.*le="/, "", key); sub(/".*/, "", key); return key }
        FNR == 1 { file++ }
        index($1, m "{") == 1 && index($1, t) {
          n = le($1); if (file == 1) before[n] = $2; else { after[n] = $2; order[++k] = n }
        }
        END {
          total = after[order[k]] - before[order[k]]
          if (total <= 0) { print "-"; exit }
          p50 = p99 = ""; lower = 0; prev = 0
          for (i = 1; i <= k; i++) {
            c = after[order[i]] - before[order[i]]
            upper = (order[i] == "+Inf") ? lower : order[i] + 0
            if (p50 == "" && c >= 0.5 * total) p50 = lower + (upper - lower) * (0.5 * total - prev) / (c - prev)
            if (p99 == "" && c >= 0.99 * total) p99 = lower + (upper - lower) * (0.99 * total - prev) / (c - prev)
            lower = upper; prev = c
          }
          printf "p50 %.0f ms, p99 %.0f ms,", p50 * 1000, p99 * 1000
        }' "$a" "$b")"
    done
    line+="; "
  done
  RUDDER_LAT_LINE=$line
}

# CPU seconds between two readings.
cpu_diff() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a - b}'; }

# Waits until rudder's push counters stop moving (1s without a push).
settle() {
  local last="" now i
  for i in $(seq 1 60); do
    now=$(curl -fsS "$ADMIN/metrics" | awk '/^rudder_xds_pushes_total/ {n += $2} END {print n + 0}')
    [ "$now" = "$last" ] && return
    last=$now
    sleep 1
  done
}

# Starts loadgen in the background (extra args appended); waits for its
# ready file unless told not to.
start_loadgen() {
  local tag=$1
  shift
  REPORT=$OUT/report-$tag.json
  LG_LOG=$OUT/loadgen-$tag.log
  local ready=$OUT/ready-$tag
  rm -f "$ready" "$REPORT"
  local conn=()
  [ -n "$CONNECTIONS" ] && conn=(--connections "$CONNECTIONS")
  local cmd=("$BIN/rudder-loadgen" proxies --xds-addr "$XDS_ADDR" --proxies "$PROXIES" --ramp "$RAMP"
    --namespace-count "$NAMESPACES" --apps "$SERVICES" "${conn[@]}" --report "$REPORT"
    --ready-file "$ready" --progress 5s "$@")
  log_cmd "${cmd[@]}"
  "${cmd[@]}" >"$LG_LOG.out" 2>"$LG_LOG" &
  LG_PID=$!
  PIDS+=("$LG_PID")
  sample "$LG_PID" "$OUT/loadgen-$tag.csv" &
  PIDS+=("$!")
  local waited=0
  while [ ! -f "$ready" ]; do
    kill -0 "$LG_PID" 2>/dev/null || { cat "$LG_LOG" >&2; die "loadgen exited before all proxies were ready"; }
    sleep 0.2
    waited=$((waited + 1))
    [ $waited -lt $((TIMEOUT * 5)) ] || die "proxies not ready within ${TIMEOUT}s; see $LG_LOG"
  done
  say "all $PROXIES proxies ready"
}

# Waits for loadgen to reach its goal; LG_RC is its exit code (2: goal missed).
wait_loadgen() {
  LG_RC=0
  wait "$LG_PID" || LG_RC=$?
  # Remembered for the script's exit status: a missed goal is a failed run.
  [ "$LG_RC" = 0 ] || FAILED=$((FAILED + 1))
  [ -f "$REPORT" ] || die "loadgen wrote no report; see $LG_LOG"
}

stop_loadgen() {
  stop_child "$LG_PID" INT
  wait_loadgen
}

churn() {
  run "$BIN/rudder-loadgen" churn --dir "$MESH" --changes-log "$CHANGES" --seed "$SEED" "$@" 2>>"$OUT/churn-$TAG.log"
}

header() {
  echo
  echo "==== rudder perf: $1 ===="
  echo "git $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?'), $BUILD_LABEL, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "mesh: $SERVICES services x $ENDPOINTS endpoints in $NAMESPACES namespaces (VS $VS_SHARE, DR $DR_SHARE, Sidecar $SIDECAR_SHARE); debounce $DEBOUNCE"
  echo "proxies: $PROXIES ${MODE_LABEL:-$(jget "$REPORT" config.mode)} on $(jget "$REPORT" config.connections) HTTP/2 connections, ramp ${RAMP}/s (0 = all at once)"
}

cold_line() {
  echo "cold connect: all ready after $(jget "$REPORT" cold_connect.all_ready_seconds) s; per proxy $(lat "$REPORT" cold_connect.per_proxy_ready)"
  echo "per proxy: cds $(jget "$REPORT" types.cds.bytes_per_proxy.mean) B / $(jget "$REPORT" types.cds.held_per_proxy.mean) clusters, eds $(jget "$REPORT" types.eds.bytes_per_proxy.mean) B, lds $(jget "$REPORT" types.lds.bytes_per_proxy.mean) B, rds $(jget "$REPORT" types.rds.bytes_per_proxy.mean) B"
}

errors_line() {
  echo "loadgen: NACKs $(jget "$REPORT" errors.nacks), stream errors $(jget "$REPORT" errors.stream_errors), unrequested resources $(jget "$REPORT" errors.unrequested_resources), never-answered EDS/RDS names $(jget "$REPORT" errors.unanswered_eds_names)/$(jget "$REPORT" errors.unanswered_rds_names); goal exit code $LG_RC"
}

footer() {
  echo "results: $OUT"
  echo "commands:"
  sed 's/^/  /' "$COMMANDS"
  : >"$COMMANDS"
}

# ---------------------------------------------------------------- scenarios

scenario_cold() {
  TAG=cold
  mesh mesh-cold
  start_rudder cold
  phase before B
  start_loadgen cold --until-converged --duration "${TIMEOUT}s"
  phase after A
  wait_loadgen
  header "cold (all proxies connect at once to a loaded Rudder)"
  cold_line
  pushes_between before after
  echo "rudder pushes while connecting: $PUSH_LINE"
  echo "rudder RSS: $(mb "$RSS_B") MB before proxies, $(mb "$RSS_A") MB when all ready, peak $(peak_rss_mb "$RUDDER_CSV") MB; CPU while connecting: $(cpu_diff "$CPU_A" "$CPU_B") s"
  errors_line
  stop_rudder
  footer
}

# Converged proxies, then COUNT changes of KIND at RATE; loadgen stops when
# every change reached every proxy it should.
changes_run() {
  local tag=$1 kind=$2 count=$3 rate=$4 mode=${5:-}
  TAG=$tag
  mesh "mesh-$tag"
  start_rudder "$tag"
  start_loadgen "$tag" $mode --changes-log "$CHANGES" --until-changes "$count" \
    --duration "$((TIMEOUT + count / ${rate%.*} + 1))s"
  settle # the initial pushes are over before measuring
  phase before B
  CHURN_JSON=$(churn --kind "$kind" --count "$count" --rate "$rate")
  phase churned C
  wait_loadgen
  phase after A
}

scenario_one_endpoint() {
  changes_run one-endpoint endpoints 1 1
  header "one-endpoint (one endpoint address replaced after convergence)"
  cold_line
  echo "EDS convergence across affected proxies: $(lat "$REPORT" changes.convergence.eds)"
  echo "  (expected audience: every ready proxy subscribed to the service; reached by all: $(jget "$REPORT" changes.complete)/1)"
  pushes_between before after
  echo "rudder pushes for the change: $PUSH_LINE"
  echo "  (an endpoint change should push EDS only, once per affected proxy)"
  errors_line
  stop_rudder
  footer
}

scenario_churn() {
  local count=$((RATE * DURATION))
  changes_run churn endpoints "$count" "$RATE"
  header "churn ($RATE endpoint changes/s for ${DURATION}s)"
  echo "churn driver: $CHURN_JSON"
  echo "EDS convergence, every (change, proxy): $(lat "$REPORT" changes.convergence.eds)"
  echo "per change, last proxy: $(lat "$REPORT" changes.per_change_last_proxy)"
  echo "changes that reached every expected proxy: $(jget "$REPORT" changes.complete)/$(jget "$REPORT" changes.logged)"
  pushes_between before after
  echo "rudder pushes during churn: $PUSH_LINE"
  echo "rudder RSS: $(mb "$RSS_B") MB before churn, $(mb "$RSS_A") MB after, peak $(peak_rss_mb "$RUDDER_CSV") MB; CPU during churn: $(cpu_diff "$CPU_A" "$CPU_B") s"
  echo "loadgen steady bytes per change per proxy: $(jget "$REPORT" changes.steady_bytes_per_change_per_proxy)"
  errors_line
  stop_rudder
  footer
}

# What an edit scenario reports: convergence per type as the load generator
# saw it, Rudder's pushes and its own latency quantiles for the edit, the
# bytes each proxy received, resources re-sent unchanged, errors.
edit_lines() {
  for t in cds eds lds rds all_types; do
    echo "convergence $t: $(lat "$REPORT" "changes.convergence.$t")"
  done
  echo "reached every proxy: $(jget "$REPORT" changes.complete)/1"
  pushes_between before after
  echo "rudder pushes for the edit: $PUSH_LINE"
  latency_between before after
  echo "rudder histograms for the edit (publish to sent; to ACK): $RUDDER_LAT_LINE"
  echo "loadgen steady bytes per proxy: $(jget "$REPORT" changes.steady_bytes_per_change_per_proxy)"
  echo "redundant resources re-sent unchanged (cds eds lds rds): $(for t in cds eds lds rds; do printf '%s ' "$(jget "$REPORT" "types.$t.steady.redundant_resources")"; done)"
  errors_line
}

scenario_service_edit() {
  changes_run service-edit service 1 1
  header "service-edit (one Service gains an HTTP port: CDS/EDS/LDS/RDS change for every proxy)"
  edit_lines
  stop_rudder
  footer
}

# The edit the performance goal names: a VirtualService edit that affects
# every proxy. One service's VirtualService (created if the mesh gave it none)
# gains a route named change-<id>; every proxy imports every service, so every
# proxy's route configuration for port 8080 changes, and nothing else should.
scenario_vs_edit() {
  changes_run vs-edit virtual-service 1 1
  header "vs-edit (one service's VirtualService gains an HTTP route: RDS changes for every proxy)"
  local created
  created=$([ "$(jget "$CHANGES" created_virtual_service)" = True ] && echo "created" || echo "edited")
  echo "the edit: $(jget "$CHANGES" service), route $(jget "$CHANGES" route), VirtualService $created"
  echo "(a route-only edit should push RDS only, once per proxy: $PROXIES)"
  edit_lines
  stop_rudder
  footer
}

scenario_idle() {
  TAG=idle
  mesh mesh-idle
  start_rudder idle
  start_loadgen idle
  settle
  phase idle-start B
  say "idle for ${DURATION}s ..."
  sleep "$DURATION"
  phase idle-end A
  stop_loadgen
  header "idle (${DURATION}s with converged proxies and no changes)"
  pushes_between idle-start idle-end
  local total=$((PUSHES_cds + PUSHES_eds + PUSHES_lds + PUSHES_rds))
  echo "rudder pushes while idle: $PUSH_LINE-> $([ "$total" = 0 ] && echo PASS || echo "FAIL (expected 0)")"
  echo "rudder CPU while idle: $(cpu_diff "$CPU_A" "$CPU_B") s over ${DURATION}s; RSS $(mb "$RSS_A") MB"
  echo "loadgen steady responses (after ready): cds $(jget "$REPORT" types.cds.steady.responses) eds $(jget "$REPORT" types.eds.steady.responses) lds $(jget "$REPORT" types.lds.steady.responses) rds $(jget "$REPORT" types.rds.steady.responses)"
  errors_line
  stop_rudder
  footer
}

scenario_delta_vs_sotw() {
  local count=$((RATE * DURATION)) mode table="" per
  for mode in sotw delta; do
    TAG=dvs-$mode
    mesh "mesh-$TAG"
    start_rudder "$TAG"
    start_loadgen "$TAG" $([ $mode = delta ] && echo --delta) --changes-log "$CHANGES" \
      --until-changes "$((count + 1))" --duration "$((TIMEOUT + DURATION))s"
    settle
    phase before B
    CHURN_JSON=$(churn --kind endpoints --count "$count" --rate "$RATE")
    settle
    phase churned C
    churn --kind service --count 1 --rate 1 >/dev/null
    wait_loadgen
    phase after A
    per=$((count * PROXIES))
    pushes_between before churned
    local ep=$(((BYTES_cds + BYTES_eds + BYTES_lds + BYTES_rds) / per))
    pushes_between churned after
    local svc=$(((BYTES_cds + BYTES_eds + BYTES_lds + BYTES_rds) / PROXIES))
    local cold=0 t
    for t in cds eds lds rds; do
      cold=$((cold + $(jget "$REPORT" "types.$t.cold.bytes")))
    done
    table+=$(printf '%-6s %14s %16s %14s   %s' "$mode" "$((cold / PROXIES))" "$ep" "$svc" "$(lat "$REPORT" changes.convergence.eds)")
    table+=$'\n'
    stop_rudder
  done
  MODE_LABEL="sotw, then delta,"
  header "delta-vs-sotw ($count endpoint changes at $RATE/s, then one service edit; each mode on a fresh Rudder)"
  echo "bytes per proxy (sum of resource bytes rudder pushed, all types) and convergence of the endpoint changes:"
  printf '%-6s %14s %16s %14s   %s\n' mode "cold connect" "endpoint change" "service edit" "EDS convergence (all changes)"
  printf '%s' "$table"
  MODE_LABEL=""
  footer
}

scenario_scale10k() {
  TAG=scale10k
  mesh mesh-scale10k
  start_rudder scale10k
  phase before B
  start_loadgen scale10k --until-converged --duration "${TIMEOUT}s" --no-redundancy-check
  phase after A
  wait_loadgen
  header "scale10k ($PROXIES proxies)"
  cold_line
  echo "rudder RSS: $(mb "$RSS_B") MB before proxies, $(mb "$RSS_A") MB with all connected, peak $(peak_rss_mb "$RUDDER_CSV") MB; CPU while connecting $(cpu_diff "$CPU_A" "$CPU_B") s"
  echo "rudder RSS per proxy: $(awk -v a="$RSS_A" -v b="$RSS_B" -v n="$PROXIES" 'BEGIN {printf "%.1f", (a - b) / n}') KB"
  echo "loadgen peak RSS $(peak_rss_mb "$OUT/loadgen-scale10k.csv") MB"
  errors_line
  stop_rudder
  footer
}

# ---------------------------------------------------------------- main

FAILED=0
command -v python3 >/dev/null || die "python3 is needed (free ports, JSON)"
command -v curl >/dev/null || die "curl is needed"
build
say "results in $OUT"
if [ "$SCENARIO" = all ]; then
  for s in $SCENARIOS; do
    defaults "$s"
    "scenario_${s//-/_}"
  done
else
  "scenario_${SCENARIO//-/_}"
fi
if [ "$FAILED" != 0 ]; then
  say "the load generator missed its goal in $FAILED scenario run(s) (see 'goal exit code' above)"
  exit 1
fi
