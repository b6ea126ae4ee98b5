#!/usr/bin/env bash
# The demo: a local NATS and 5 nodes; kill -9 one node, watch it detected as failed, restart
# it and watch it rejoin with a new generation; put a real file into SDFS, kill one of its
# holders, get it back intact and watch it re-replicated; import Fashion-MNIST, train `cnn`, then
# train `resnet` and kill -9 its worker mid-run: another worker resumes from the last checkpoint;
# serve both concurrently with fair time through a worker and a coordinator kill; infer online.
# The cluster stays up for the dashboard;
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

step "Starting a secure local cluster: nats-server (TLS, one identity per node and role) + 5 nodes"
"$IDUNNO" local up --nodes 5 --dir "$DIR"
# The CLI acts as the cluster's operator; the dashboards serve HTTPS with the cluster's CA and
# want the token local up generated.
SECURE="$PWD/$DIR/secure"
export IDUNNO_NATS_IDENTITY="$SECURE/identities/operator"
CURL=(curl -s --cacert "$SECURE/ca.pem" -H "Authorization: Bearer $(cat "$SECURE/dashboard.token")")

step "A viewer reads but changes nothing: the server refuses it"
IDUNNO_NATS_IDENTITY="$SECURE/identities/viewer" "$IDUNNO" members | head -3
IDUNNO_NATS_IDENTITY="$SECURE/identities/viewer" "$IDUNNO" leave n2 || true

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

pid_of() { python3 -c 'import json,sys; print([n["pid"] for n in json.load(open(sys.argv[1]))["nodes"] if n["name"]==sys.argv[2]][0])' "$DIR/local.json" "$1"; }
job_field() { "$IDUNNO" --json job "$1" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1], {}, {"j": j}))' "$2"; }

step "Datasets: import Fashion-MNIST (60000 + 10000 images) into SDFS"
"$IDUNNO" dataset import fashion-mnist
"$IDUNNO" datasets

step "Train cnn on 12000 images for 2 epochs (short schedule; make bench trains to convergence)"
"$IDUNNO" train cnn fashion-mnist --epochs 2 --limit 12000

step "Train resnet (ResNet-20) on 6000 images for 3 epochs, and kill -9 its worker after the first checkpoint"
job=$("$IDUNNO" train resnet fashion-mnist --epochs 3 --limit 6000 --detach)
echo "job $job"
deadline=$((SECONDS + 300))
until [ "$(job_field "$job" 'j["checkpoint_epochs"]')" -ge 1 ]; do
  [ $SECONDS -lt $deadline ] || { echo "demo: no checkpoint after 300 s" >&2; exit 1; }
  sleep 0.5
done
worker=$(job_field "$job" 'j["attempts"][-1]["worker"]')
echo "checkpoint after epoch 1 stored; kill -9 the worker $worker"
kill -9 "$(pid_of "$worker")"
"$IDUNNO" watch "$job"
echo "attempts: $(job_field "$job" '", ".join(a["worker"] + " from epoch " + str(a["resumed_at_epoch"] + 1) for a in j["attempts"])')"
"$IDUNNO" local restart "$worker" --dir "$DIR"

step "idunno models"
"$IDUNNO" models

step "Serve cnn and resnet concurrently (continuous, fair time): equal query rates though resnet costs more"
a=$("$IDUNNO" serve cnn 32 --continuous --detach)
b=$("$IDUNNO" serve resnet 32 --continuous --detach)
sleep 12
"$IDUNNO" job-stats "$a"
"$IDUNNO" job-stats "$b"
"$IDUNNO" workers
coord=$("$IDUNNO" --json members | python3 -c 'import json,sys; print(json.load(sys.stdin)["coordinator"])')
other=$("$IDUNNO" --json members | python3 -c 'import json,sys; v=json.load(sys.stdin); print([m["id"] for m in v["members"] if m["state"]=="alive" and m["id"]!=v["coordinator"]][0])')
step "kill -9 a worker ($other) and the coordinator ($coord); the jobs go on"
kill -9 "$(pid_of "$other")" "$(pid_of "$coord")"
sleep 12
"$IDUNNO" job-stats "$a"
"$IDUNNO" job-stats "$b"
"$IDUNNO" members
"$IDUNNO" cancel "$a"; "$IDUNNO" cancel "$b"
"$IDUNNO" local restart "$other" --dir "$DIR"; "$IDUNNO" local restart "$coord" --dir "$DIR"

step "Serve cnn once over the 10000 test images, batch 64"
"$IDUNNO" serve cnn 64
"$IDUNNO" jobs

step "Online inference: three test images as PNG files, through the CLI and through HTTP"
python3 infra/test_images.py "$DIR/images" 3
"$IDUNNO" infer cnn "$DIR"/images/test0.png "$DIR"/images/test1.png "$DIR"/images/test2.png
"${CURL[@]}" -X POST -H 'Content-Type: image/png' --data-binary @"$DIR/images/test0.png" 'https://127.0.0.1:8080/api/infer?model=cnn' |
  python3 -c 'import json,sys; r=json.load(sys.stdin); p=r["predictions"][0]; print("POST /api/infer -> %s (%.2f) from %s, batch of %d" % (p["class_name"], p["score"], r["node"], r["batch"]))'
echo "a request whose deadline (1 ms) passes first is answered with a timeout:"
"$IDUNNO" infer resnet "$DIR"/images/test0.png --timeout-ms 1 || true
"$IDUNNO" workers

step "The dashboard's API and metrics (the same figures the pages show live)"
"${CURL[@]}" https://127.0.0.1:8080/api/workers |
  python3 -c 'import json,sys; r=json.load(sys.stdin); print("GET /api/workers: coordinator %s; %s" % (r["coordinator"], ", ".join("%s %s" % (w["id"], w["state"]) for w in r["workers"])))'
"${CURL[@]}" https://127.0.0.1:8080/readyz |
  python3 -c 'import json,sys; r=json.load(sys.stdin); print("GET /readyz: ready %s (bus %s, buckets %s, member %s)" % (r["ready"], r["bus"], r["buckets"], r["member"]))'
"${CURL[@]}" https://127.0.0.1:8080/v2/models/cnn |
  python3 -c 'import json,sys; r=json.load(sys.stdin); print("Open Inference Protocol, GET /v2/models/cnn: versions %s, inputs %s" % (r["versions"], ", ".join("%s %s %s" % (i["name"], i["datatype"], i["shape"]) for i in r["inputs"])))'
# Every node exports its own series; the coordinator also the cluster's (docs/api.md, "Metrics").
"${CURL[@]}" https://127.0.0.1:8080/metrics | grep -E '^idunno_(build_info|infer_requests_total|serve_batches_total|members|jobs|sdfs_files)' || true

step "The cluster keeps running"
echo "Dashboard: https://127.0.0.1:8080/ (Jobs, Workers, Files, Stats, Models; log in with the token in $SECURE/dashboard.token; the certificate is by $SECURE/ca.pem)"
echo "API: docs/api.md    Metrics: https://127.0.0.1:8080/metrics    Security: docs/security.md"
echo "The CLI outside this directory: export IDUNNO_NATS_IDENTITY=$IDUNNO_NATS_IDENTITY"
echo "Try: $IDUNNO members | $IDUNNO stat | $IDUNNO droprate mid | $IDUNNO leave n2 | $IDUNNO join n2"
echo "     $IDUNNO ls | $IDUNNO put <file> <name> | $IDUNNO get <name> <file> | $IDUNNO store"
echo "     $IDUNNO train mlp fashion-mnist --epochs 3 | $IDUNNO jobs | $IDUNNO models | $IDUNNO datasets"
echo "     $IDUNNO serve resnet 64 --continuous | $IDUNNO qps local | $IDUNNO infer cnn $DIR/images/test1.png"
echo "Stop it with: make down"
