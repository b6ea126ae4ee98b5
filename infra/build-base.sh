#!/usr/bin/env bash
# Builds (once) a release idunno-node of an earlier commit, for benchmarks that compare this
# build with it; prints the binary's path. Usage: infra/build-base.sh <commit>
set -euo pipefail
commit=${1:?usage: build-base.sh <commit>}
repo=$(cd "$(dirname "$0")/.." && pwd)
home=${IDUNNO_HOME:-$HOME/.cache/idunno}
full=$(git -C "$repo" rev-parse "$commit^{commit}")
out="$home/base-$full/idunno-node"
if [ ! -x "$out" ]; then
  work=$(mktemp -d)
  trap 'git -C "$repo" worktree remove --force "$work/src" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
  git -C "$repo" worktree add -q --detach "$work/src" "$full" >&2
  (cd "$work/src" && CARGO_TARGET_DIR="$home/base-target" cargo build --release -q -p idunno-node --bin idunno-node >&2)
  mkdir -p "$(dirname "$out")"
  cp "$home/base-target/release/idunno-node" "$out"
fi
echo "$out"
