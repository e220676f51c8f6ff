#!/bin/sh
# /init of the interop test guest (busybox ash, PID 1 in the initramfs).
#
# The kernel hands unknown name=value boot parameters to /init as environment
# variables; tests/interop/guest.py sets these:
#   guest_ip=A.B.C.D/P        address of eth0
#   guest_arp=IP@MAC,...      permanent neighbour entries (optional)
#   guest_linkwait=SECS       how long to wait for carrier on eth0 (default 30)
#   guest_cmd64=BASE64        shell command run once the network is up; it may use
#                             the functions below
#   guest_hold=1              after the command, stay up (sleep) instead of
#                             powering off
# Everything the host looks for is a line on the serial console starting with
# GUEST- or one of the function markers below.
export PATH=/bin:/sbin
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp

up() { cut -d' ' -f1 /proc/uptime; }
up_s() { cut -d. -f1 /proc/uptime; }

# ping_report IP COUNT: COUNT echo requests 0.2 s apart, then
#   PING-RESULT ip=IP sent=N received=M
# (exit status 0 when at least one reply came)
ping_report() {
    out=$(ping -c "$2" -i 0.2 -W 3 "$1" 2>&1)
    echo "$out"
    sent=$(echo "$out" | sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p')
    recv=$(echo "$out" | sed -n 's/.*, \([0-9]*\) packets received.*/\1/p')
    echo "PING-RESULT ip=$1 sent=${sent:-0} received=${recv:-0}"
    [ "${recv:-0}" -gt 0 ]
}

# ping_loop IP SECONDS [INTERVAL_MS]: one echo request at a time for SECONDS,
# one line per request:  PING-LOOP seq=N ok|lost uptime=U
ping_loop() {
    end=$(( $(up_s) + $2 )); seq=0; gap=$(( ${3:-500} * 1000 ))
    while [ "$(up_s)" -lt "$end" ]; do
        seq=$((seq + 1))
        if ping -c 1 -W 1 "$1" >/dev/null 2>&1; then r=ok; else r=lost; fi
        echo "PING-LOOP seq=$seq $r uptime=$(up)"
        usleep "$gap"
    done
    echo "PING-LOOP-END count=$seq"
}

# tcp_recv PORT [TIMEOUT]: accept one TCP connection, store what arrives, then
#   TCP-RECV bytes=N md5=HEX
# nc's stdin is the console, which never reaches EOF: busybox nc half-closes
# the connection at stdin EOF, and the sender would then stop early.
tcp_recv() {
    timeout "${2:-120}" nc -l -p "$1" >/tmp/tcp.rx </dev/console
    rc=$?
    echo "TCP-RECV bytes=$(wc -c </tmp/tcp.rx) md5=$(md5sum </tmp/tcp.rx | cut -d' ' -f1) rc=$rc"
    return $rc
}

# tcp_send IP PORT BYTES: BYTES random bytes to IP:PORT (retrying the connect
# while nobody listens, 30 s at most), after printing
#   TCP-SEND bytes=N md5=HEX
tcp_send() {
    head -c "$3" /dev/urandom >/tmp/tcp.tx
    echo "TCP-SEND bytes=$(wc -c </tmp/tcp.tx) md5=$(md5sum </tmp/tcp.tx | cut -d' ' -f1)"
    i=0
    until nc "$1" "$2" </tmp/tcp.tx >/dev/null; do
        i=$((i + 1))
        [ "$i" -ge 60 ] && { echo "TCP-SEND-FAILED"; return 1; }
        usleep 500000
    done
    echo "TCP-SEND-DONE"
}

echo "GUEST-BOOT uptime=$(up)"
while read -r m; do
    insmod "/lib/modules/$m.ko" || echo "GUEST-ERROR insmod $m"
done </lib/modules/order

ip link set lo up
i=0
while [ ! -e /sys/class/net/eth0 ] && [ "$i" -lt 100 ]; do usleep 50000; i=$((i + 1)); done
if [ -e /sys/class/net/eth0 ]; then
    ip link set eth0 up
    [ -n "$guest_ip" ] && ip addr add "$guest_ip" dev eth0
    for e in $(echo "$guest_arp" | tr ',' ' '); do
        arp -i eth0 -s "${e%%@*}" "${e#*@}" || echo "GUEST-ERROR arp $e"
    done
    # no carrier until the vhost-user back-end has set the rings up
    i=0
    while [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" != 1 ] \
          && [ "$i" -lt $(( ${guest_linkwait:-30} * 10 )) ]; do
        usleep 100000; i=$((i + 1))
    done
else
    echo "GUEST-ERROR no eth0"
fi
echo "GUEST-READY ip=${guest_ip:-none} mac=$(cat /sys/class/net/eth0/address 2>/dev/null)" \
     "carrier=$(cat /sys/class/net/eth0/carrier 2>/dev/null) uptime=$(up)"

if [ -n "$guest_cmd64" ]; then
    cmd=$(echo "$guest_cmd64" | base64 -d)
    echo "GUEST-CMD-BEGIN uptime=$(up)"
    ( eval "$cmd" )
    echo "GUEST-CMD-RC=$? uptime=$(up)"
fi
s=/sys/class/net/eth0/statistics
[ -d $s ] && echo "GUEST-STATS rx_packets=$(cat $s/rx_packets) tx_packets=$(cat $s/tx_packets)" \
    "rx_dropped=$(cat $s/rx_dropped) tx_dropped=$(cat $s/tx_dropped)"

if [ "$guest_hold" = 1 ]; then
    echo "GUEST-HOLD uptime=$(up)"
    while :; do sleep 3600; done
fi
echo "GUEST-POWEROFF uptime=$(up)"
sync
poweroff -f
