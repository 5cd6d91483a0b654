#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain: dig and kdig for the scripted
# DNS checks, unbound, kresd and delv to validate signed answers (tests/dnssec.rs runs its
# own resolvers on loopback ports), Chromium and ChromeDriver for the dashboard test, etcd
# and nftables for the cluster tests (tests/cluster.rs starts its own etcd members on
# loopback and cuts one node off with a firewall rule of its own), promtool for the metrics
# and alert rules. Safe to run again; does nothing when everything is present.
set -euo pipefail
need=()
command -v dig >/dev/null 2>&1 || need+=(dnsutils)
command -v kdig >/dev/null 2>&1 || need+=(knot-dnsutils)
# DNSSEC validators for tests/dnssec.rs: unbound, Knot Resolver, and delv (BIND's, in
# bind9-dnsutils).
command -v unbound >/dev/null 2>&1 || need+=(unbound)
command -v kresd >/dev/null 2>&1 || need+=(knot-resolver)
command -v delv >/dev/null 2>&1 || need+=(bind9-dnsutils)
# dnssec-verify (BIND's, in bind9-utils) checks `meridian dnssec dump`.
command -v dnssec-verify >/dev/null 2>&1 || need+=(bind9-utils)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v nft >/dev/null 2>&1 || need+=(nftables)
# promtool checks /metrics and tests contrib/prometheus/alerts.yml.
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# tests/docs.rs runs the documents' commands in namespaces of their own (unshare, ip), and
# the documents use curl, jq and openssl.
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v jq >/dev/null 2>&1 || need+=(jq)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing ${need[*]}"
    $sudo apt-get update -qq
    # The tests start their own etcd and need no Prometheus server: forbid the packages'
    # services from starting (policy-rc.d, which invoke-rc.d and deb-systemd-invoke obey), so
    # nothing is left listening on 2379 or 9090.
    policy=/usr/sbin/policy-rc.d
    own_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod 755 "$policy"
        own_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    [ -z "$own_policy" ] || $sudo rm -f "$policy"
fi
