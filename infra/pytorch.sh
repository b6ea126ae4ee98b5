#!/usr/bin/env bash
# The full PyTorch, for the benchmarks that compare IDunno with PyTorch itself (and for making
# fixtures). Not part of `make demo` or `make test`: only `make bench` runs this.
#
# Installs, once, a venv at ${IDUNNO_HOME:-$HOME/.cache/idunno}/bench-torch<version>/venv with
# PyPI's torch (the same version as the lean libtorch IDunno links, about 4.7 GB with its CUDA
# packages, about a minute) and numpy, and prints the venv's python on stdout.
set -euo pipefail

TORCH_VERSION=2.13.0
IDUNNO_HOME=${IDUNNO_HOME:-$HOME/.cache/idunno}
VENV="$IDUNNO_HOME/bench-torch$TORCH_VERSION/venv"

say() { printf 'pytorch: %s\n' "$*" >&2; }

if "$VENV/bin/python" -c "import torch, numpy; assert torch.__version__.startswith('$TORCH_VERSION')" \
    2>/dev/null; then
  echo "$VENV/bin/python"
  exit 0
fi
say "installing the full PyTorch $TORCH_VERSION into $VENV (about 4.7 GB, for benchmarks only)"
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check --no-cache-dir "torch==$TORCH_VERSION" numpy >&2
"$VENV/bin/python" -c "import torch; print('pytorch: torch', torch.__version__, 'threads', torch.get_num_threads())" >&2
echo "$VENV/bin/python"
