#!/usr/bin/env bash
# Refreshes the embedded default GeoIP database (country level, CC BY 4.0 by the NRO)
# from the npm registry, then records the version it came from.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent @ip-location-db/geo-whois-asn-country-mmdb >/dev/null)
tar -xzf "$tmp"/*.tgz -C "$tmp"
cp "$tmp/package/geo-whois-asn-country.mmdb" geo-whois-asn-country.mmdb
cp "$tmp/package/NRO_LICENSE" NRO_LICENSE
version=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$tmp/package/package.json")
sed -i "s/^Version: .*/Version: $version/" ATTRIBUTION.md
echo "geodata: @ip-location-db/geo-whois-asn-country-mmdb $version"
