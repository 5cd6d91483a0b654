#!/usr/bin/env bash
# Side-by-side benchmark of Meridian, gdnsd and PowerDNS on loopback: one command on a
# fresh machine. Installs dnsperf, gdnsd and PowerDNS from Debian, builds Meridian, builds
# the shared GeoIP databases (the embedded one in the GeoIP2 City schema; DB-IP City Lite,
# fetched and converted by bench/fetch-city.sh, unless --geodb leaves out "city"), then runs
# bench/bench.py (options pass through, see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for cmd_pkg in dnsperf:dnsperf gdnsd:gdnsd pdns_server:pdns-server dig:dnsutils; do
    command -v "${cmd_pkg%%:*}" >/dev/null 2>&1 || need+=("${cmd_pkg##*:}")
done
[ -e /usr/lib/x86_64-linux-gnu/pdns/libbindbackend.so ] || need+=(pdns-backend-bind)
[ -e /usr/lib/x86_64-linux-gnu/pdns/libgeoipbackend.so ] || need+=(pdns-backend-geoip)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "bench: installing ${need[*]}"
    $sudo apt-get update -qq
    # Debian starts the packaged services; the benchmark runs its own copies instead.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    $sudo systemctl disable --now gdnsd pdns >/dev/null 2>&1 || true
fi
cargo build --release --quiet --bin meridian
mkdir -p bench/.work
if [ ! -s bench/.work/bench-city.mmdb ]; then
    echo "bench: building the GeoIP2-City database shared by all servers (the example builds first)"
    cargo run --release --quiet --example bench-geodb -- bench/.work/bench-city.mmdb
fi
geodb="embedded,city"
prev=""
for arg in "$@"; do
    case "$arg" in
        --geodb=*) geodb="${arg#--geodb=}" ;;
    esac
    [ "$prev" = "--geodb" ] && geodb="$arg"
    prev="$arg"
done
case ",$geodb," in
    *,city,*) bench/fetch-city.sh ;;
esac
exec python3 bench/bench.py "$@"
