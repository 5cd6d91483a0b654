#!/usr/bin/env bash
# etcd's write rate from Meridian's node records: three etcd members and three Meridian
# nodes on loopback, one zone of 3 regions x 10 endpoints probed every second (TCP, to one
# local listener), for SECONDS seconds (default 60). Prints the records each node wrote and
# etcd's own count of puts, per second. Everything it starts is stopped at the end.
#
#   bench/cluster-write-rate.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h|--help) sed -n 2,7p "$0"; exit 0 ;; esac
seconds="${1:-60}"
command -v etcd >/dev/null || { echo "needs etcd: scripts/setup.sh installs it" >&2; exit 1; }
cargo build --release --quiet
bin="$PWD/target/release/meridian"
work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The probe target: accepts and closes.
target=$(free_port)
python3 -c "
import socket
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $target)); s.listen(512)
while True:
    c,_=s.accept(); c.close()
" &
pids+=($!)

# etcd: three members.
initial=""; clients=()
declare -a peer
for i in 0 1 2; do
    c=$(free_port); p=$(free_port); clients+=("http://127.0.0.1:$c"); peer[$i]=$p
    initial+="${initial:+,}m$i=http://127.0.0.1:$p"
done
for i in 0 1 2; do
    etcd --name "m$i" --data-dir "$work/etcd$i" \
        --listen-client-urls "${clients[$i]}" --advertise-client-urls "${clients[$i]}" \
        --listen-peer-urls "http://127.0.0.1:${peer[$i]}" \
        --initial-advertise-peer-urls "http://127.0.0.1:${peer[$i]}" \
        --initial-cluster "$initial" --initial-cluster-state new \
        --heartbeat-interval 50 --election-timeout 500 >"$work/etcd$i.log" 2>&1 &
    pids+=($!)
done

# The zone: 3 regions of 10 endpoints, each probed every second.
mkdir -p "$work/zones"
{
    printf 'zone = "rate.test."\nrecords = %s\n$TTL 3600\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ IN NS ns1\nns1 IN A 127.0.0.53\n%s\n\n' "'''" "'''"
    printf '[health]\ncheck = "tcp"\ninterval = 1\ntimeout = 0.5\n\n'
    lat=(39.04 53.35 1.35); lon=(-77.49 -6.26 103.82); names=(us-east eu-west ap-southeast)
    for r in 0 1 2; do
        printf '[regions.%s]\nlocation = { lat = %s, lon = %s }\nhealth = { port = %s }\nendpoints = [' \
            "${names[$r]}" "${lat[$r]}" "${lon[$r]}" "$target"
        for e in $(seq 1 10); do
            printf '%s{ address = "127.0.%d.%d", check-address = "127.0.0.1:%s" }' \
                "$([ "$e" -gt 1 ] && echo ', ')" $((r + 1)) "$e" "$target"
        done
        printf ']\n\n'
    done
    printf '[steered.www]\nregions = ["us-east", "eu-west", "ap-southeast"]\n'
} >"$work/zones/rate.test.toml"

endpoints=$(printf '"%s", ' "${clients[@]}"); endpoints="[${endpoints%, }]"
admins=()
for n in 1 2 3; do
    printf '[cluster]\nnode = "ns%s"\nendpoints = %s\n' "$n" "$endpoints" >"$work/ns$n.toml"
    "$bin" serve --config "$work/ns$n.toml" --zones "$work/zones" --state-dir "$work/state$n" \
        --dns-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --log-format json \
        2>"$work/ns$n.log" &
    pids+=($!)
done
for n in 1 2 3; do
    for _ in $(seq 100); do
        a=$(grep -o '"admin":"[^"]*"' "$work/ns$n.log" | head -1 | cut -d'"' -f4 || true)
        [ -n "$a" ] && break
        sleep 0.1
    done
    [ -n "$a" ] || { echo "ns$n did not start:"; cat "$work/ns$n.log"; exit 1; }
    admins+=("$a")
done

records() { curl -s "http://$1/metrics" | awk '/^meridian_cluster_records_written_total/ {print $2}'; }
puts() { curl -s "$1/metrics" | awk '/^etcd_mvcc_put_total/ {print $2}'; }
sleep 5   # past the start: every endpoint probed and published once
before=(); for a in "${admins[@]}"; do before+=("$(records "$a")"); done
puts_before=$(puts "${clients[0]}")
sleep "$seconds"
total=0
for i in 0 1 2; do
    d=$(( $(records "${admins[$i]}") - ${before[$i]} ))
    total=$((total + d))
    echo "ns$((i + 1)): $d records in ${seconds} s"
done
puts_after=$(puts "${clients[0]}")
awk -v t="$total" -v s="$seconds" 'BEGIN { printf "node records: %.2f writes/s for 3 nodes x 30 endpoints at 1 s\n", t / s }'
awk -v a="$puts_after" -v b="$puts_before" -v s="$seconds" \
    'BEGIN { printf "etcd puts (all keys, one member): %.2f/s\n", (a - b) / s }'
