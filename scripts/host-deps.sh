#!/usr/bin/env bash
# Install the Debian packages ovsd and its tests need, once.  Idempotent: a
# package that is already installed is not touched, and apt-get update runs
# only when something is missing.
set -euo pipefail

# iproute2 for namespaces and veths; ping, ethtool and trafgen (netsniff-ng) for traffic.
want=(iproute2 iputils-ping ethtool netsniff-ng)
if [ "${1:-}" = python ]; then
    want=(python3 python3-venv python3-pip)
fi

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "ovsd needs these Debian packages: ${missing[*]}; run 'make' as root or install them" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
