#!/usr/bin/env bash
# The demo: a local NATS and 5 nodes; kill -9 one node, watch it detected as failed, restart
# it and watch it rejoin with a new generation. The cluster stays up for the dashboard;
# `make down` (or this script with --down) stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}/release
IDUNNO="$TARGET/idunno"
export IDUNNO_NATS_URL=${IDUNNO_NATS_URL:-nats://127.0.0.1:4222}
DIR=.idunno/demo
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

"$IDUNNO" local down --dir "$DIR" >/dev/null
[ "${1:-}" = "--down" ] && exit 0

state_of() { # state_of <node> [observer] -> "state generation"
  "$IDUNNO" --json members --node "${2:-n1}" | python3 -c '
import json, sys
view = json.load(sys.stdin)
m = [m for m in view["members"] if m["id"] == sys.argv[1]]
print(m[0]["state"], m[0]["generation"]) if m else print("unknown 0")' "$1"
}
wait_state() { # wait_state <node> <state> [min generation]
  local deadline=$((SECONDS + 30))
  while :; do
    read -r st gen < <(state_of "$1")
    if [ "$st" = "$2" ] && [ "$gen" -gt "${3:-0}" ]; then return 0; fi
    [ $SECONDS -lt $deadline ] || { echo "demo: $1 not $2 after 30 s" >&2; exit 1; }
    sleep 0.05
  done
}

step "Starting a local cluster: nats-server + 5 nodes"
"$IDUNNO" local up --nodes 5 --dir "$DIR"

step "idunno members"
"$IDUNNO" members

step "idunno stat"
"$IDUNNO" stat

read -r _ old_gen < <(state_of n3)
pid=$(python3 -c 'import json,sys; print([n["pid"] for n in json.load(open(sys.argv[1]))["nodes"] if n["name"]=="n3"][0])' "$DIR/local.json")
step "kill -9 n3 (pid $pid)"
start=$(date +%s%N)
kill -9 "$pid"
wait_state n3 failed
echo "n3 marked failed after $(( ($(date +%s%N) - start) / 1000000 )) ms"
"$IDUNNO" members

step "Restarting n3"
"$IDUNNO" local restart n3 --dir "$DIR"
wait_state n3 alive "$old_gen"
"$IDUNNO" members

step "The cluster keeps running"
echo "Dashboard: http://127.0.0.1:8080/    Members as JSON: http://127.0.0.1:8080/api/members"
echo "Try: $IDUNNO members | $IDUNNO droprate mid | $IDUNNO leave n2 | $IDUNNO join n2"
echo "Stop it with: make down"
