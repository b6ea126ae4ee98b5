//! The stand-ins the walk-through's machines run instead of systemd's `systemctl` and
//! `useradd`: written into a directory put first on the blocks' PATH.

use std::path::Path;

/// `systemctl daemon-reload | enable [--now] | disable [--now] | start | stop | restart |
/// reload UNIT…`, for the units installed under the machine's root (`$WT_ROOT/etc/systemd/system`):
/// a start runs the unit's ExecStart in the background in a session of its own (its pid in
/// `$WT_ROOT/run/systemd/<unit>.pid`, its output in `<unit>.log` beside it), with each
/// EnvironmentFile= read as systemd reads it (KEY=VALUE lines, no shell quoting; a `-` prefix
/// for an optional one), each StateDirectory= made, `%i` put in, and the system paths and
/// `/usr/local/bin/nats-server` moved as the blocks' are; a stop sends KillSignal= and waits
/// TimeoutStopSec= before SIGKILL; a reload runs ExecReload= with `$MAINPID` put in. No User=
/// (the test runs as root), no Restart=.
const SYSTEMCTL: &str = r#"#!/bin/sh
set -eu
root="$WT_ROOT"
units="$root/etc/systemd/system"
state="$root/run/systemd"
mkdir -p "$state"

localize() {
    sed -e "s#/usr/local/bin/nats-server#$WT_NATS_SERVER#g" \
        -e "s#^/opt/#$root/opt/#" \
        -e "s#\([ =-]\)/opt/#\1$root/opt/#g" \
        -e "s#/etc/idunno#$root/etc/idunno#g" \
        -e "s#/var/lib/idunno#$root/var/lib/idunno#g"
}

unit() {
    case "$1" in
        *@*) inst="${1#*@}"; inst="${inst%.service}"; file="$units/${1%%@*}@.service" ;;
        *) inst=""; file="$units/${1%.service}.service" ;;
    esac
    [ -f "$file" ] || { echo "Unit $1 not found." >&2; exit 5; }
}

key() {
    sed -n "s/^$1=//p" "$file" | sed "s/%i/$inst/g" | localize
}

envfile() {
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in ''|'#'*|';'*) continue ;; esac
        k="${line%%=*}"
        v="${line#*=}"
        case "$v" in \"*\") v="${v#\"}"; v="${v%\"}" ;; esac
        export "$k=$v"
    done < "$1"
}

alive() {
    [ -r "/proc/$1/status" ] && ! grep -q '^State:.*Z' "/proc/$1/status"
}

start() {
    unit "$1"
    pidfile="$state/$1.pid"
    if [ -f "$pidfile" ] && alive "$(cat "$pidfile")"; then return 0; fi
    (
        for f in $(key EnvironmentFile); do
            case "$f" in -*) f="${f#-}"; [ -f "$f" ] || continue ;; esac
            envfile "$f"
        done
        for d in $(key StateDirectory); do mkdir -p "$root/var/lib/$d"; done
        exec setsid $(key ExecStart)
    ) </dev/null >>"$state/$1.log" 2>&1 &
    echo $! >"$pidfile"
}

stop() {
    unit "$1"
    pidfile="$state/$1.pid"
    [ -f "$pidfile" ] || return 0
    pid="$(cat "$pidfile")"
    sig="$(key KillSignal | tail -n 1)"
    limit="$(key TimeoutStopSec | tail -n 1)"
    sig="${sig:-SIGTERM}"
    kill -s "${sig#SIG}" "$pid" 2>/dev/null || true
    n=0
    while alive "$pid"; do
        n=$((n + 1))
        if [ "$n" -gt $(( ${limit:-90} * 10 )) ]; then kill -s KILL "$pid" 2>/dev/null || true; fi
        sleep 0.1
    done
    rm -f "$pidfile"
}

reload() {
    unit "$1"
    pid="$(cat "$state/$1.pid")"
    line="$(key ExecReload | tail -n 1 | sed "s/\$MAINPID/$pid/g")"
    $line
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
now=no
for a in "$@"; do
    if [ "$a" = --now ]; then now=yes; fi
done
for u in "$@"; do
    case "$u" in --*) continue ;; esac
    case "$cmd" in
        enable) unit "$u"; if [ $now = yes ]; then start "$u"; fi ;;
        disable) unit "$u"; if [ $now = yes ]; then stop "$u"; fi ;;
        start) start "$u" ;;
        stop) stop "$u" ;;
        restart) stop "$u"; start "$u" ;;
        reload) reload "$u" ;;
        *) echo "systemctl stand-in: no $cmd" >&2; exit 1 ;;
    esac
done
case "$cmd" in
    daemon-reload|enable|disable|start|stop|restart|reload) ;;
    *) echo "systemctl stand-in: no $cmd" >&2; exit 1 ;;
esac
"#;

/// `useradd`: the test runs every unit as root (no User=), so there is no user to add.
const USERADD: &str = "#!/bin/sh\nexit 0\n";
/// `chown`: nor a user to give files to (root reads them all).
const CHOWN: &str = "#!/bin/sh\nexit 0\n";

/// Writes the stand-ins into `dir`.
pub fn install(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in [
        ("systemctl", SYSTEMCTL),
        ("useradd", USERADD),
        ("chown", CHOWN),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let chmod = std::process::Command::new("chmod")
            .arg("+x")
            .arg(&path)
            .status()
            .unwrap();
        assert!(chmod.success());
    }
}
