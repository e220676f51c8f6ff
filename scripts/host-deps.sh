#!/usr/bin/env bash
# Install the Debian packages ovsd and its tests need, once.  Idempotent: a
# package that is already installed is not touched, and apt-get update runs
# only when something is missing.
set -euo pipefail

# iproute2 for namespaces and veths; ping, ethtool and trafgen (netsniff-ng) for traffic.
# Interop tests: dpdk-testpmd (dpdk-dev) as virtio-user frontend and vhost back-end,
# QEMU for the test guest, busybox-static and cpio for the guest's initramfs;
# openvswitch-common for OVS's own schema, which the database tests compare with;
# openvswitch-switch for the real ovs-vsctl, which the OVSDB tests drive ovsd with;
# tshark to read what `ofctl capture` writes.
want=(iproute2 iputils-ping ethtool netsniff-ng dpdk-dev qemu-system-x86 busybox-static cpio
      openvswitch-common openvswitch-switch tshark)
case "${1:-}" in
    python) want=(python3 python3-venv python3-pip) ;;
    # make bench runs real OVS beside ovsd: the kernel-datapath build and the DPDK build.
    bench) want+=(openvswitch-switch-dpdk) ;;
esac

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

export DEBIAN_FRONTEND=noninteractive
updated=0
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "ovsd needs these Debian packages: ${missing[*]}; run 'make' as root or install them" >&2
        exit 1
    fi
    apt-get update -qq
    updated=1
    # tshark (the capture tests read ofctl's pcapng with it): no setuid dumpcap question.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[ "${1:-}" = python ] && exit 0

# The interop tests' guest boots Debian's cloud kernel: fetch its .deb (and
# busybox-static's) into the guest cache; never install the kernel on the host.
# tests/interop/guest.py builds the guest image from these and does the same
# download itself when they are missing.
[ "$(id -u)" -eq 0 ] || exit 0
debs=${OVSD_GUEST_CACHE:-/var/cache/ovsd-tests/guest}/debs
kernel_pkg() {
    apt-cache depends linux-image-cloud-amd64 2>/dev/null \
        | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1
}
kpkg=$(kernel_pkg)
if [ -z "$kpkg" ] && [ $updated -eq 0 ]; then
    apt-get update -qq
    kpkg=$(kernel_pkg)
fi
if [ -z "$kpkg" ]; then
    echo "host-deps: apt does not know linux-image-cloud-amd64; the interop guest cannot be built" >&2
    exit 1
fi
mkdir -p "$debs"
for p in "$kpkg" busybox-static; do
    compgen -G "$debs/${p}_*.deb" >/dev/null && continue
    (cd "$debs" && apt-get download -qq -o APT::Sandbox::User=root "$p" >/dev/null)
done
