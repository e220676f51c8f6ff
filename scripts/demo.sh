#!/usr/bin/env bash
# make demo: two hosts (network namespaces) behind veths, plugged into br0 of a
# fresh ovsd as system ports; they ping each other through the switch's PMD.
# Everything it creates is removed on exit, even on Ctrl-C or an error.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
RUN=$(mktemp -d /tmp/ovsd-demo.XXXXXX)
TAG=od$$
NS1=${TAG}h1 NS2=${TAG}h2 V1=${TAG}v1 V2=${TAG}v2
OVSD_PID=

cleanup() {
    set +e
    [ -n "$OVSD_PID" ] && kill "$OVSD_PID" 2>/dev/null && wait "$OVSD_PID" 2>/dev/null
    ip netns del "$NS1" 2>/dev/null
    ip netns del "$NS2" 2>/dev/null
    ip link del "$V1" 2>/dev/null
    ip link del "$V2" 2>/dev/null
    rm -rf "$RUN"
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ofctl() { echo "\$ ofctl $*"; "$BIN/ofctl" --rundir "$RUN" "$@"; }

say "starting ovsd (rundir $RUN)"
"$BIN/ovsd" --rundir "$RUN" --log-level warning &
OVSD_PID=$!
for _ in $(seq 100); do [ -S "$RUN/ovsd.sock" ] && break; sleep 0.05; done

say "two hosts: $NS1 (10.0.0.1) and $NS2 (10.0.0.2), each behind a veth"
for i in 1 2; do
    ns=${TAG}h$i veth=${TAG}v$i
    ip netns add "$ns"
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip netns exec "$ns" ip addr add "10.0.0.$i/24" dev eth0
    ip netns exec "$ns" ip link set eth0 up
    ip netns exec "$ns" ip link set lo up
    # The switch forwards frames as the host made them: no checksum offload.
    ip netns exec "$ns" ethtool -K eth0 tx off >/dev/null 2>&1 || true
    ip link set "$veth" up
done

say "the switch: br0 with the veths as system ports, PMD on core 1, NORMAL forwarding"
ofctl set Open_vSwitch . other_config:pmd-cpu-mask=0x2
ofctl add-br br0
ofctl add-port br0 "$V1"
ofctl add-port br0 "$V2"
ofctl show br0

say "ping through the switch"
ip netns exec "$NS1" ping -c 4 -i 0.2 10.0.0.2

say "what the PMD did"
ofctl pmd-stats-show
ofctl pmd-rxq-show
ofctl dump-dp-flows
ofctl dump-flows br0
ofctl fdb/show br0
say "done; cleaning up"
