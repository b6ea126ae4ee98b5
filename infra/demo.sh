#!/usr/bin/env bash
# The demo: a local NATS and 5 nodes; kill -9 one node, watch it detected as failed, restart
# it and watch it rejoin with a new generation; put a real file into SDFS, kill one of its
# holders, get it back intact and watch it re-replicated. The cluster stays up for the dashboard;
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
rm -rf "$DIR" # each demo starts from an empty cluster

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

FILE=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
step "SDFS: put Fashion-MNIST's test images (4 replicas, 3 must fsync before the put succeeds)"
for _ in $(seq 1 50); do "$IDUNNO" put "$FILE" datasets/fmnist/t10k-images.gz && break; sleep 0.2; done
"$IDUNNO" ls datasets/
holder=$("$IDUNNO" --json ls datasets/fmnist/t10k-images.gz | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["versions"][-1]["replicas"][0])')
hpid=$(python3 -c 'import json,sys; print([n["pid"] for n in json.load(open(sys.argv[1]))["nodes"] if n["name"]==sys.argv[2]][0])' "$DIR/local.json" "$holder")
step "kill -9 $holder, a holder of the file; get it back and compare"
kill -9 "$hpid"
"$IDUNNO" get datasets/fmnist/t10k-images.gz "$DIR/t10k-images.gz"
sha256sum "$FILE" "$DIR/t10k-images.gz"
deadline=$((SECONDS + 30))
until "$IDUNNO" --json ls datasets/fmnist/t10k-images.gz | python3 -c '
import json, sys
v = json.load(sys.stdin)[0]["versions"][-1]
sys.exit(0 if len(v["replicas"]) == 4 and sys.argv[1] not in v["replicas"] else 1)' "$holder"; do
  [ $SECONDS -lt $deadline ] || { echo "demo: not re-replicated after 30 s" >&2; exit 1; }
  sleep 0.1
done
echo "re-replicated: back to 4 live replicas"
"$IDUNNO" ls datasets/
"$IDUNNO" local restart "$holder" --dir "$DIR"

step "The cluster keeps running"
echo "Dashboard: http://127.0.0.1:8080/    Members as JSON: http://127.0.0.1:8080/api/members"
echo "Try: $IDUNNO members | $IDUNNO stat | $IDUNNO droprate mid | $IDUNNO leave n2 | $IDUNNO join n2"
echo "     $IDUNNO ls | $IDUNNO put <file> <name> | $IDUNNO get <name> <file> | $IDUNNO store"
echo "Stop it with: make down"
