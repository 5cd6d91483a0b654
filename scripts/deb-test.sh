#!/usr/bin/env bash
# Builds the .deb, installs it with dpkg, starts the service, asks it on loopback port 53,
# reloads it with the unit's ExecReload signal, then purges the package. Needs root, as CI
# runs, and a machine without the package. With systemd running, systemctl starts the unit;
# without it, the unit's ExecStart line runs as its User= with its one capability
# (CAP_NET_BIND_SERVICE) and no new privileges, as systemd would start it. Leaves nothing
# behind: the process is stopped, the package purged, and the meridian user removed if this
# run created it.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
if [ "$(id -u)" -ne 0 ]; then
    echo "deb-test: needs root (dpkg -i)" >&2
    exit 1
fi
if dpkg -s meridian >/dev/null 2>&1; then
    echo "deb-test: the meridian package is installed already; leaving this machine alone" >&2
    exit 1
fi
scripts/deb.sh
deb=$(ls -t target/debian/meridian_*.deb | head -n 1)

user_existed=false
getent passwd meridian >/dev/null && user_existed=true
log=$(mktemp)
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    if dpkg -s meridian >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive dpkg --purge meridian >/dev/null
    fi
    if ! $user_existed && getent passwd meridian >/dev/null; then
        userdel meridian
    fi
    if ! $user_existed && getent group meridian >/dev/null; then
        groupdel meridian
    fi
    rm -f "$log"
}
trap cleanup EXIT
fail() {
    echo "deb-test: $*" >&2
    echo "--- service log" >&2
    cat "$log" >&2
    exit 1
}

DEBIAN_FRONTEND=noninteractive dpkg -i "$deb"
files=$(dpkg -L meridian)
for f in /usr/bin/meridian /etc/meridian/meridian.toml /etc/meridian/zones/example.com.toml \
    /usr/share/bash-completion/completions/meridian /usr/share/zsh/vendor-completions/_meridian \
    /usr/share/fish/vendor_completions.d/meridian.fish; do
    grep -qx "$f" <<<"$files" || fail "$f is not in the package"
done
grep -q '/usr/share/man/man1/meridian-serve\.1' <<<"$files" || fail "no meridian-serve(1)"
unit=$(grep -E '/systemd/system/meridian\.service$' <<<"$files") || fail "no unit in the package"
getent passwd meridian >/dev/null || fail "postinst did not create the meridian user"
[ "$(stat -c %U /var/lib/meridian)" = meridian ] || fail "/var/lib/meridian is not meridian's"
meridian check --zones /etc/meridian/zones >/dev/null || fail "the installed zones do not check"

if [ -d /run/systemd/system ]; then
    systemctl start meridian
    pid=$(systemctl show -p MainPID --value meridian)
else
    exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
    [ -n "$exec_start" ] || fail "no ExecStart in $unit"
    # shellcheck disable=SC2086 # the unit's command line, split as systemd splits it
    (cd /var/lib/meridian && exec setpriv --reuid meridian --regid meridian --init-groups \
        --inh-caps=-all,+net_bind_service --ambient-caps=-all,+net_bind_service \
        --bounding-set=-all,+net_bind_service --no-new-privs $exec_start) </dev/null 2>"$log" &
    pid=$!
fi

answer=""
for _ in $(seq 1 60); do
    answer=$(dig +short +time=1 +tries=1 @127.0.0.1 -p 53 static.example.com A 2>/dev/null || true)
    [ "$answer" = 192.0.2.80 ] && break
    kill -0 "$pid" 2>/dev/null || fail "the service exited"
    sleep 0.5
done
[ "$answer" = 192.0.2.80 ] || fail "no answer on 127.0.0.1:53 (got '$answer')"
[ "$(ps -o user= -p "$pid")" = meridian ] || fail "the service does not run as meridian"

# ExecReload: SIGHUP reads the zones again.
kill -HUP "$pid"
for _ in $(seq 1 40); do
    grep -q "zones reloaded" "$log" 2>/dev/null && break
    [ -d /run/systemd/system ] && break
    sleep 0.25
done
[ -d /run/systemd/system ] || grep -q "zones reloaded" "$log" || fail "no reload after SIGHUP"
answer=$(dig +short +time=2 +tries=1 @127.0.0.1 -p 53 static.example.com A)
[ "$answer" = 192.0.2.80 ] || fail "no answer after the reload (got '$answer')"

if [ -d /run/systemd/system ]; then
    systemctl stop meridian
fi
echo "deb-test: $(basename "$deb") installed, served 127.0.0.1:53 as meridian, reloaded, removed in $((SECONDS - start)) s"
