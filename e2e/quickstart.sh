#!/usr/bin/env bash
# Rudder quickstart: the control plane serves the example mesh in config/demo/
# to a real Envoy sidecar; real backends answer real requests. Linux, no Docker,
# no Kubernetes. Usage: ./e2e/quickstart.sh [--keep]   (--keep: run until Ctrl-C)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib/envoy.sh"

KEEP=0 KEEPING=0
case "${1:-}" in
    "") ;; --keep) KEEP=1 ;;
    -h | --help) sed -n '2,4s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--keep]" >&2; exit 2 ;;
esac

NODE_ID='sidecar~127.0.0.5~client-0.demo~demo.svc.cluster.local'
WEB_CLUSTER='outbound|8080||web.demo.svc.cluster.local'
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rudder-quickstart.XXXXXX")
PIDS=() NAMES=() FAILED=()

# Stops everything we started (TERM, then KILL after 5 s) and removes $WORK;
# on failure the logs move to a directory that is kept.
cleanup() {
    local rc=$? pid alive logs
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for _ in {1..50}; do
        alive=0; for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break; sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null; done
    wait 2>/dev/null || true
    if ((rc != 0)) && compgen -G "$WORK/*.log" >/dev/null; then
        logs=$(mktemp -d "${TMPDIR:-/tmp}/rudder-quickstart-logs.XXXXXX")
        mv "$WORK"/*.log "$logs"/
        echo "Logs kept for you in $logs/ (rudder.log, envoy.log, ...)" >&2
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit $((KEEPING ? 0 : 130))' INT # with --keep, Ctrl-C is the normal way out
trap 'exit $((KEEPING ? 0 : 143))' TERM

die() {
    echo >&2; echo "FAILED: $*" >&2
    for f in "$WORK/rudder.log" "$WORK/envoy.log"; do
        [[ -s $f ]] && { echo "--- last lines of $(basename "$f"):" >&2; tail -n 15 "$f" >&2; }
    done
    exit 1
}
now_ms() { echo $((${EPOCHREALTIME/[.,]/} / 1000)); }

# start NAME CMD...: run CMD in $WORK, output to $WORK/NAME.log.
start() {
    local name=$1; shift
    (cd "$WORK" && exec "$@") >"$WORK/$name.log" 2>&1 &
    PIDS+=("$!") NAMES+=("$name")
}
# poll SECONDS CMD...: retry CMD until it succeeds; 1 on timeout or when one
# of our processes died (its name in DIED).
poll() {
    local deadline i
    deadline=$(($(now_ms) + $1 * 1000)); shift
    until "$@" >/dev/null 2>&1; do
        for i in "${!PIDS[@]}"; do
            kill -0 "${PIDS[$i]}" 2>/dev/null || { DIED=${NAMES[$i]}; return 1; }
        done
        (($(now_ms) < deadline)) || return 1
        sleep 0.02
    done
}
wait_until() { # wait_until SECONDS WHAT CMD...
    poll "$1" "${@:3}" && return 0
    [[ -n ${DIED:-} ]] && die "$DIED exited while waiting for $2"
    die "timed out after $1 s waiting for $2"
}
check() { # check WHAT CMD...: report whether CMD succeeds
    local what=$1; shift
    if "$@" >/dev/null 2>&1; then echo "   ok: $what"; else echo "   NOT OK: $what"; FAILED+=("$what"); fi
}

# web N: N requests to web through Envoy; prints, per request, the backend
# that answered, or "HTTP-<status>" for anything but a 200.
web() {
    local i out
    for ((i = 0; i < $1; i++)); do
        out=$(curl -s --max-time 5 -w '\n%{http_code}' -H 'Host: web' http://127.0.0.1:8080/) || out=$'\n000'
        [[ ${out##*$'\n'} == 200 ]] || { echo "HTTP-${out##*$'\n'}"; continue; }
        sed -n 's/.*"backend":"\([^"]*\)".*/\1/p' <<<"${out%$'\n'*}" | grep . || echo '?'
    done
}
table() { # table ANSWER...: one "name  ###  count" line per distinct answer
    printf '%s\n' "$@" | sort | uniq -c | while read -r n name; do
        printf '     %-8s %-10s %d\n' "$name" "$(printf '%*s' "$n" '' | tr ' ' '#')" "$n"
    done
}
answered_by() { [[ $(printf '%s\n' "${@:2}" | sort -u | paste -sd ' ') == "$1" ]]; } # answered_by "A B" ANSWER...
store() { # store LINE: send LINE to store over TCP via Envoy, print the reply
    (exec 3<>/dev/tcp/127.0.0.1/7070 && printf '%s\n' "$1" >&3 && read -r -t 5 reply <&3 && echo "$reply")
}
web13_gone() { # true once Envoy's web cluster no longer lists 127.0.0.13
    local c; c=$(curl -sf "http://127.0.0.1:$ENVOY_ADMIN/clusters") &&
        [[ $c == *"$WEB_CLUSTER::"* && $c != *"$WEB_CLUSTER::127.0.0.13:9080::"* ]]
}
rejected() { curl -sf "http://127.0.0.1:$ADMIN_PORT/debug/configz" | python3 -c \
    'import json,sys; r=json.load(sys.stdin)["rejected"]; [print(x["message"]) for x in r]; sys.exit(0 if r else 1)'; }

echo "Rudder quickstart: control plane + real Envoy + real backends, all on this machine."
echo
printf 'Building (cargo build --bins)... '
cargo build --bins --manifest-path "$ROOT/Cargo.toml" --message-format=json-render-diagnostics \
    >"$WORK/build.json" 2>"$WORK/build.err" || { echo; cat "$WORK/build.err" >&2; die "cargo build failed"; }
read -r RUDDER ECHO < <(python3 -c 'import json,sys
exe = {m["target"]["name"]: m["executable"] for m in map(json.loads, open(sys.argv[1]))
       if m.get("reason") == "compiler-artifact" and m.get("executable")}
print(exe.get("rudder", "-"), exe.get("rudder-echo", "-"))' "$WORK/build.json") || true
[[ -x $RUDDER && -x $ECHO ]] || die "cargo build did not report the rudder and rudder-echo binaries"
echo done
ensure_envoy || die "Envoy is needed (see above)"
echo "Envoy: $ENVOY_BIN"

# Control-plane and Envoy admin ports: Istio's defaults when free, else any.
# The app-facing and backend addresses are fixed by config/demo.
read -r XDS_PORT ADMIN_PORT ENVOY_ADMIN STATS_PORT READY_PORT TLS_PORT WEBHOOK_PORT < <(python3 - <<'EOF'
import socket, sys
def bind(addr, fallback=None):
    s = socket.socket()  # SO_REUSEADDR as servers do, so TIME_WAIT doesn't count as in use:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, addr[1] != 0)
    try: s.bind(addr); return s
    except OSError:
        if fallback is None: sys.exit("The demo needs %s:%d, but something listens there (another quickstart?)" % addr)
        return bind(fallback)
for ip, port in [("127.0.0.1", 8080), ("127.0.0.1", 7070), ("127.0.0.11", 9080),
                 ("127.0.0.12", 9080), ("127.0.0.13", 9080), ("127.0.0.21", 9070)]:
    bind((ip, port)).close()
held = [bind(("127.0.0.1", p), ("127.0.0.1", 0)) for p in (15010, 15014, 15000, 15090, 15021, 15012, 15017)]
print(*(s.getsockname()[1] for s in held))
EOF
) || true
[[ -n ${WEBHOOK_PORT:-} ]] || die "could not set up ports (see above)"
cp -R "$ROOT/config/demo" "$WORK/demo"

echo
echo "Starting the demo mesh (a copy of config/demo in $WORK/demo):"
for i in 11 12 13; do start "web-$i" "$ECHO" --listen "127.0.0.$i:9080" --name "web-$i"; done
start store-0 "$ECHO" --listen 127.0.0.21:9070 --name store-0 --tcp
for n in web-11 web-12 web-13 store-0; do wait_until 10 "backend $n" grep -q listening "$WORK/$n.log"; done
echo "   backends: web-11/12/13 on 127.0.0.11-13:9080 (HTTP), store-0 on 127.0.0.21:9070 (TCP)"
# File mode's identity plumbing: a key that signs service-account tokens (in
# Kubernetes the API server signs them), and the sidecar's token.
"$RUDDER" token keygen --out-dir "$WORK/identity" >"$WORK/token.log" 2>&1 &&
    "$RUDDER" token issue --key "$WORK/identity/jwt-key.pem" --namespace demo \
        --service-account default --out "$WORK/identity/token" >>"$WORK/token.log" 2>&1 ||
    die "rudder token: $(cat "$WORK/token.log")"
start rudder env NO_COLOR=1 "$RUDDER" serve --config-dir demo --xds-addr "127.0.0.1:$XDS_PORT" \
    --admin-addr "127.0.0.1:$ADMIN_PORT" --debounce 100ms --ca-dir identity/ca \
    --token-public-key identity/jwt-pub.pem --xds-tls-addr "127.0.0.1:$TLS_PORT" \
    --webhook-addr "127.0.0.1:$WEBHOOK_PORT"
wait_until 30 "rudder /ready" curl -sf "http://127.0.0.1:$ADMIN_PORT/ready"
echo "   rudder:   xDS over TLS on 127.0.0.1:$TLS_PORT (plaintext $XDS_PORT), admin on http://127.0.0.1:$ADMIN_PORT"
"$RUDDER" bootstrap --node-id "$NODE_ID" --meta INTERCEPTION_MODE=NONE --xds-addr "127.0.0.1:$TLS_PORT" \
    --xds-root-cert "$WORK/identity/ca/root-cert.pem" --token-file "$WORK/identity/token" \
    --admin-port "$ENVOY_ADMIN" --stats-port "$STATS_PORT" --readiness-port "$READY_PORT" \
    --output "$WORK/envoy-bootstrap.json" >"$WORK/bootstrap.log" 2>&1 || die "rudder bootstrap: $(cat "$WORK/bootstrap.log")"
start envoy "$ENVOY_BIN" --disable-hot-restart --concurrency 1 -c envoy-bootstrap.json
wait_until 30 "Envoy to become LIVE" bash -c "curl -sf http://127.0.0.1:$ENVOY_ADMIN/ready | grep -qx LIVE"
echo "   envoy:    sidecar of client-0.demo (token for demo/default), admin on http://127.0.0.1:$ENVOY_ADMIN"
echo "   The app talks to its sidecar: http://127.0.0.1:8080 (Host: web) and tcp 127.0.0.1:7070 (store)"

echo
echo "1. Requests through Envoy"
echo "   \$ curl -H 'Host: web' http://127.0.0.1:8080/    (30 times), answered by:"
mapfile -t R < <(web 30)
table "${R[@]}"
check "30 requests spread over the 3 web endpoints" answered_by "web-11 web-12 web-13" "${R[@]}"
reply=$(store 'hello store' 2>/dev/null) || reply="(no reply)"
echo "   TCP to store, 127.0.0.1:7070: sent 'hello store', got back '$reply'"
check "TCP to store answered by store-0" test "$reply" = "store-0: hello store"

echo
echo "2. Live edit: remove 127.0.0.13 (pod web-2) from demo/endpoints.yaml"
sed '/127\.0\.0\.13/,/targetRef/d' "$WORK/demo/endpoints.yaml" >"$WORK/endpoints.new"
t0=$(now_ms) # replace the file in one step, as editors save
mv "$WORK/endpoints.new" "$WORK/demo/endpoints.yaml"
if poll 10 web13_gone; then
    echo "   Envoy dropped 127.0.0.13 $(($(now_ms) - t0)) ms after the file was saved (file -> rudder -> EDS -> Envoy)"
else echo "   Envoy still lists 127.0.0.13 after 10 s"; fi
sleep 1
echo "   \$ curl -H 'Host: web' http://127.0.0.1:8080/    (30 times), answered by:"
mapfile -t R < <(web 30)
table "${R[@]}"
check "traffic now spreads over 2 endpoints, web-13 gets none" answered_by "web-11 web-12" "${R[@]}"

echo
echo "3. Bad edit: demo/broken.yaml declares a Service with port 70000"
printf '%s\n' 'apiVersion: v1' 'kind: Service' 'metadata: {name: broken, namespace: demo}' \
    'spec: {ports: [{name: http, port: 70000}]}' >"$WORK/demo/broken.yaml"
poll 10 rejected && echo "   rudder rejected it; from /debug/configz:" && rejected | sed 's/^/     /'
check "the bad document is rejected with a clear reason" rejected
mapfile -t R < <(web 30)
n=0; for r in "${R[@]}"; do [[ $r == HTTP-* ]] || n=$((n + 1)); done
echo "   The last good config stays in force: $n/30 requests answered 200"
check "traffic still flows (all 200, from web-11 and web-12)" answered_by "web-11 web-12" "${R[@]}"

echo
echo "4. Identity: the sidecar proved its service account over TLS xDS and got a certificate"
spiffe=$(curl -sf "http://127.0.0.1:$ENVOY_ADMIN/certs" | grep -o '"uri": *"spiffe://[^"]*"' | head -n1 | sed 's/.*"\(spiffe:[^"]*\)"/\1/') || spiffe=""
echo "   Envoy's /certs: workload certificate for ${spiffe:-(none)}, delivered over SDS"
check "the sidecar holds spiffe://cluster.local/ns/demo/sa/default" test "$spiffe" = "spiffe://cluster.local/ns/demo/sa/default"
echo "   rudder's /debug/certz: $(curl -sf "http://127.0.0.1:$ADMIN_PORT/debug/certz" | python3 -c \
    'import json,sys; d=json.load(sys.stdin); print(", ".join(w["identity"] + " until " + w["not_after"] for w in d["workloads"]))')"

echo
echo "Look around (while this runs):"
echo "   http://127.0.0.1:$ADMIN_PORT/debug/configz   accepted and rejected objects"
echo "   http://127.0.0.1:$ADMIN_PORT/debug/syncz     connected proxies, versions sent/ACKed/NACKed"
echo "   http://127.0.0.1:$ADMIN_PORT/debug/config_dump?proxy=$NODE_ID   what this Envoy was sent"
echo "   http://127.0.0.1:$ADMIN_PORT/debug/certz     issued certificates (dates, never keys)"
echo "   http://127.0.0.1:$ADMIN_PORT/metrics         Prometheus metrics"
echo "   http://127.0.0.1:$ENVOY_ADMIN/                Envoy's own admin page (clusters, config_dump, stats)"
echo
if ((${#FAILED[@]})); then
    die "these checks failed:$(printf '\n   - %s' "${FAILED[@]}")"
fi
echo "All checks passed."
if ((KEEP)); then
    KEEPING=1
    echo "Everything keeps running until Ctrl-C. Edit files in $WORK/demo and watch Envoy"
    echo "follow (try: curl -H 'Host: web' http://127.0.0.1:8080/); logs are in $WORK/*.log."
    while :; do
        for i in "${!PIDS[@]}"; do kill -0 "${PIDS[$i]}" 2>/dev/null || die "${NAMES[$i]} exited"; done
        sleep 1
    done
fi
echo "Everything stops now that the script exits; run it with --keep to explore."
