#!/usr/bin/env bash
# Builds the relocatable bundle: one archive that runs on a machine without this checkout or
# the build's cache.
#
#   bin/idunno, bin/idunno-node      the binaries (rpath $ORIGIN/../lib first)
#   lib/                             every library they need that is not the system's (libtorch,
#                                    libc10, libgomp, the CUDA runtime libtorch links, …)
#   share/idunno/dashboard/          the dashboard (the node finds it relative to its binary)
#   etc/nats/, etc/systemd/          the NATS configs and the systemd units
#
# Usage: infra/dist.sh [--profile release|debug] [--from DIR] [--out DIR]   (prints the archive)
# `make dist` builds the release binaries and the dashboard first; --profile debug bundles the
# debug binaries already built, --from takes them from DIR (the bundle test does both).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
profile=release
from=""
out="$root/target/dist"
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        --from) from="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "usage: infra/dist.sh [--profile release|debug] [--from DIR] [--out DIR]" >&2; exit 2 ;;
    esac
done
case "$profile" in release|debug) ;; *) echo "--profile: release or debug, not $profile" >&2; exit 2 ;; esac

target="${from:-${CARGO_TARGET_DIR:-$root/target}/$profile}"
for bin in idunno idunno-node; do
    [ -x "$target/$bin" ] || { echo "no $target/$bin: build it first (make build)" >&2; exit 1; }
done
[ -f "$root/frontend/dist/index.html" ] || { echo "no frontend/dist: run make frontend" >&2; exit 1; }

version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)"
name="idunno-$version-linux-$(uname -m)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
bundle="$stage/$name"
mkdir -p "$bundle"/{bin,lib,share/idunno,etc/nats,etc/systemd}

cp "$target/idunno" "$target/idunno-node" "$bundle/bin/"
cp -r "$root/frontend/dist" "$bundle/share/idunno/dashboard"
cp "$root"/infra/nats/*.conf "$bundle/etc/nats/"
cp "$root"/infra/systemd/*.service "$bundle/etc/systemd/"

# Every library the node needs, found through the build machine's rpath, except the system's
# own (libc, libstdc++, libm, …, which every machine of this kind has).
system_lib() {
    case "$1" in
        /lib/*|/lib64/*|/usr/lib/*|/usr/lib64/*) return 0 ;;
        *) return 1 ;;
    esac
}
ldd "$bundle/bin/idunno-node" | while read -r lib arrow path _; do
    [ "$arrow" = "=>" ] || continue
    if [ "$path" = "not" ]; then
        echo "idunno-node needs $lib, which is not found" >&2
        exit 1
    fi
    system_lib "$path" && continue
    cp -L "$path" "$bundle/lib/$lib"
done

cat > "$bundle/README.txt" <<EOF
IDunno $version ($profile build)

bin/idunno-node   a node: bin/idunno-node --id n1 --data-dir /var/lib/idunno/n1 --nats nats://<server>:4222
bin/idunno        the command line: bin/idunno --nats nats://<server>:4222 members
etc/nats/         NATS server configs (machine.conf: one per machine of a cluster; single.conf;
                  sync_interval: always)
etc/systemd/      units for nats-server and idunno-node@<id>

The node finds lib/ and share/idunno/dashboard relative to its own path: move the whole
directory anywhere (e.g. /opt/idunno) and it runs. The nats-server (>= 2.10) is not included.
EOF

mkdir -p "$out"
archive="$out/$name.tar.gz"
# DIST_GZIP_LEVEL trades size for time (1 to 9, default 6; the bundle test uses 1).
tar -C "$stage" -I "gzip -${DIST_GZIP_LEVEL:-6}" -cf "$archive" "$name"
echo "$archive"
