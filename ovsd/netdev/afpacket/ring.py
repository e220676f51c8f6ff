"""AF_PACKET and PACKET_MMAP plumbing shared by the receive and transmit sides.

The kernel ABI (linux/if_packet.h) as Python constants and struct layouts,
ring geometry with validation, setting a ring up on a socket, mapping it,
asking the kernel (sock_diag for AF_PACKET) how an existing socket's ring is
laid out, so that a process that only received the socket's fd can map it,
and the few interface facts read by ioctl (flags, MTU, MAC, driver): they
answer for the caller's network namespace, unlike /sys in a process that
changed namespace without remounting it.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import socket
import struct
from dataclasses import asdict, dataclass

from ovsd.netdev.base import NetdevError

# -- kernel ABI ----------------------------------------------------------------------

SOL_PACKET = 263
ETH_P_ALL = 0x0003

PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_TX_RING = 13
PACKET_LOSS = 14
PACKET_VNET_HDR = 15
PACKET_FANOUT = 18
PACKET_QDISC_BYPASS = 20
PACKET_IGNORE_OUTGOING = 23

PACKET_MR_PROMISC = 1
SO_SNDBUFFORCE = 32  # not in Python's socket module

PACKET_FANOUT_HASH = 0
PACKET_FANOUT_FLAG_UNIQUEID = 0x2000

TPACKET_V2 = 1
TPACKET_V3 = 2

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1 << 0
TP_STATUS_AVAILABLE = 0
TP_STATUS_SEND_REQUEST = 1 << 0
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6

PAGE_SIZE = mmap.PAGESIZE

# struct tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1
# (block_status, num_pkts, offset_to_first_pkt, ...).
BLOCK_STATUS_OFFSET = 8
BLOCK_HDR = struct.Struct("<III")  # block_status, num_pkts, offset_to_first_pkt
BLOCK_SEQ = struct.Struct("<I12xQ")  # block_status ... seq_num
# struct tpacket3_hdr: next_offset, sec, nsec, snaplen, len, status, mac, net,
# then hv1 (rxhash, vlan_tci, vlan_tpid).
V3_PKT_HDR = struct.Struct("<I8xIIIH")  # next_offset, snaplen, len, status, mac
V3_VLAN = struct.Struct("<4xIH")  # at +28: (rxhash skipped) vlan_tci, vlan_tpid
V3_VLAN_OFFSET = 28
# Where the kernel puts an Ethernet frame in a V3 block: the 48-byte header
# plus a sockaddr_ll (20), aligned, leave the network header 16-byte aligned.
V3_MAC_OFFSET = 82
# struct tpacket2_hdr: status, len, snaplen, mac, net, ...  A TX slot's data
# starts right after the 32-byte header; with PACKET_VNET_HDR the data is a
# 10-byte struct virtio_net_hdr (flags, gso_type, hdr_len, gso_size,
# csum_start, csum_offset; only hdr_len is ever non-zero here) and then the
# frame.  tp_len covers both.
V2_TX_HDR = struct.Struct("<II26xH")  # tp_status, tp_len, vnet hdr_len
VNET_HDR_LEN = 10
V2_TX_DATA_OFFSET = 32 + VNET_HDR_LEN

ETH_HLEN = 14
VLAN_HLEN = 4

# -- geometry -------------------------------------------------------------------------


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclass(frozen=True)
class RxRing:
    """A TPACKET_V3 receive ring: ``block_nr`` blocks of ``block_size`` bytes.

    The kernel fills one block at a time with as many frames as fit and hands
    it over when it is full or ``timeout_ms`` after it was opened.  A frame
    may be as large as a block minus the headers (the V3 frame size is only
    the kernel's bookkeeping unit).
    """

    block_size: int
    block_nr: int
    frame_size: int = 2048
    timeout_ms: int = 1

    MIN_BLOCK = PAGE_SIZE
    MAX_BLOCK = 4 << 20
    MAX_BYTES = 1 << 30

    def __post_init__(self) -> None:
        if (not _is_pow2(self.block_size) or self.block_size % PAGE_SIZE
                or not self.MIN_BLOCK <= self.block_size <= self.MAX_BLOCK):
            raise NetdevError(
                f"rx_block_size={self.block_size}: expected a power of two from "
                f"{self.MIN_BLOCK} to {self.MAX_BLOCK} bytes (a multiple of the "
                f"{PAGE_SIZE}-byte page)")
        if not 2 <= self.block_nr <= 65536:
            raise NetdevError(f"rx_ring_blocks={self.block_nr}: expected 2 to 65536 blocks")
        if self.block_size * self.block_nr > self.MAX_BYTES:
            raise NetdevError(
                f"rx ring of {self.block_nr} blocks of {self.block_size} bytes is "
                f"{self.block_size * self.block_nr >> 20} MiB per queue; at most "
                f"{self.MAX_BYTES >> 20} MiB")
        if self.frame_size > self.block_size or self.frame_size % 16:
            raise NetdevError(f"rx frame size {self.frame_size}: expected a multiple "
                              f"of 16 no larger than the block ({self.block_size})")

    @property
    def size(self) -> int:
        return self.block_size * self.block_nr

    @property
    def max_frame(self) -> int:
        """The largest frame that arrives whole; longer ones are truncated."""
        return self.block_size - 48 - V3_MAC_OFFSET

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def request(self) -> bytes:
        """struct tpacket_req3 for PACKET_RX_RING."""
        frame_nr = self.block_size // self.frame_size * self.block_nr
        return struct.pack("7I", self.block_size, self.block_nr, self.frame_size,
                           frame_nr, self.timeout_ms, 0, 0)


@dataclass(frozen=True)
class TxRing:
    """A TPACKET_V2 transmit ring: ``frame_nr`` slots of ``frame_size`` bytes."""

    frame_size: int
    frame_nr: int

    MAX_FRAME_SIZE = 65536

    def __post_init__(self) -> None:
        if not _is_pow2(self.frame_size) or not 256 <= self.frame_size <= self.MAX_FRAME_SIZE:
            raise NetdevError(f"tx slot size {self.frame_size}: expected a power of two "
                              f"from 256 to {self.MAX_FRAME_SIZE}")
        if not 16 <= self.frame_nr <= 65536:
            raise NetdevError(f"tx_ring_frames={self.frame_nr}: expected 16 to 65536 frames")
        if self.frame_nr % self.frames_per_block:
            raise NetdevError(f"tx_ring_frames={self.frame_nr}: expected a multiple of "
                              f"{self.frames_per_block} for {self.frame_size}-byte slots")

    @classmethod
    def for_mtu(cls, mtu: int, frame_nr: int) -> "TxRing":
        """Slots just large enough for a VLAN-tagged frame of ``mtu`` bytes of payload."""
        need = V2_TX_DATA_OFFSET + mtu + ETH_HLEN + VLAN_HLEN
        size = 256
        while size < need and size < cls.MAX_FRAME_SIZE:
            size <<= 1
        return cls(size, frame_nr)

    @property
    def block_size(self) -> int:
        return max(self.frame_size, PAGE_SIZE)

    @property
    def frames_per_block(self) -> int:
        return self.block_size // self.frame_size

    @property
    def size(self) -> int:
        return self.frame_size * self.frame_nr

    @property
    def max_frame(self) -> int:
        return self.frame_size - V2_TX_DATA_OFFSET

    def request(self) -> bytes:
        """struct tpacket_req for PACKET_TX_RING."""
        return struct.pack("4I", self.block_size, self.frame_nr // self.frames_per_block,
                           self.frame_size, self.frame_nr)


# -- sockets --------------------------------------------------------------------------


def _setsockopt(sock: socket.socket, opt: int, value, what: str, ifname: str) -> None:
    try:
        sock.setsockopt(SOL_PACKET, opt, value)
    except OSError as e:
        raise NetdevError(f"{ifname}: cannot {what}: {e.strerror}") from None


def packet_socket(ifname: str) -> socket.socket:
    """A raw AF_PACKET socket that receives nothing until it is bound."""
    try:
        return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError:
        raise NetdevError(f"{ifname}: cannot open an AF_PACKET socket: system ports "
                          "need CAP_NET_RAW (run ovsd as root)") from None


def open_rx_socket(ifname: str, ifindex: int, ring: RxRing,
                   fanout_id: int | None = None) -> tuple[socket.socket, int | None]:
    """An rx socket on ``ifname`` with a V3 ring, not seeing its host's own
    transmissions, holding the interface promiscuous while it lives.

    With ``fanout_id`` None the socket stays alone; with -1 it founds a new
    hash fanout group; otherwise it joins that group.  Returns the socket and
    the group id (for the next sockets to join).
    """
    sock = packet_socket(ifname)
    try:
        _setsockopt(sock, PACKET_VERSION, TPACKET_V3, "select TPACKET_V3", ifname)
        _setsockopt(sock, PACKET_RX_RING, ring.request(), "set up the rx ring", ifname)
        _setsockopt(sock, PACKET_IGNORE_OUTGOING, 1, "ignore outgoing frames", ifname)
        mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
        _setsockopt(sock, PACKET_ADD_MEMBERSHIP, mreq, "enable promiscuous mode", ifname)
        try:
            sock.bind((ifname, ETH_P_ALL))
        except OSError as e:
            raise NetdevError(f"{ifname}: cannot bind an AF_PACKET socket: "
                              f"{e.strerror}") from None
        if fanout_id is not None:
            if fanout_id < 0:
                arg = PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_UNIQUEID
                _setsockopt(sock, PACKET_FANOUT, arg << 16, "create a fanout group", ifname)
                fanout_id = sock.getsockopt(SOL_PACKET, PACKET_FANOUT) & 0xFFFF
            else:
                _setsockopt(sock, PACKET_FANOUT, fanout_id | PACKET_FANOUT_HASH << 16,
                            "join the fanout group", ifname)
        return sock, fanout_id
    except BaseException:
        sock.close()
        raise


def open_tx_socket(ifname: str, ring: TxRing, sndbuf: int) -> socket.socket:
    """A transmit-only socket on ``ifname`` with a V2 tx ring.

    Bound with protocol 0, so the kernel never queues received frames on it.
    PACKET_LOSS makes the kernel skip a slot it cannot send instead of
    stopping the whole ring at it.  PACKET_VNET_HDR lets each slot say how
    much of the frame the kernel copies into the packet (hdr_len): the whole
    frame, so no packet points into the ring.  Left pointing into it, the
    packet is copied into freshly allocated pages anyway wherever it meets
    another network stack (a veth), which costs more than the copy.
    """
    sock = packet_socket(ifname)
    try:
        _setsockopt(sock, PACKET_VERSION, TPACKET_V2, "select TPACKET_V2", ifname)
        _setsockopt(sock, PACKET_LOSS, 1, "set PACKET_LOSS", ifname)
        _setsockopt(sock, PACKET_VNET_HDR, 1, "enable virtio-net headers", ifname)
        _setsockopt(sock, PACKET_TX_RING, ring.request(), "set up the tx ring", ifname)
        try:
            # Frames in flight are charged to the send buffer: room for the ring.
            sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, sndbuf)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        try:
            sock.bind((ifname, 0))
        except OSError as e:
            raise NetdevError(f"{ifname}: cannot bind an AF_PACKET socket: "
                              f"{e.strerror}") from None
        return sock
    except BaseException:
        sock.close()
        raise


def map_ring(fd: int, size: int) -> mmap.mmap:
    return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)


def rx_ring_drops(sock: socket.socket) -> int:
    """Frames the kernel dropped because the ring was full since the last call
    (PACKET_STATISTICS is clear-on-read)."""
    try:
        _packets, drops, _freezes = struct.unpack(
            "3I", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12))
    except OSError:
        return 0
    return drops


# -- asking the kernel about a socket's ring (sock_diag) --------------------------------

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
PACKET_SHOW_INFO = 0x1
PACKET_SHOW_RING_CFG = 0x4
PACKET_DIAG_INFO = 0
PACKET_DIAG_RX_RING = 2
PACKET_DIAG_TX_RING = 3

_NLMSGHDR = struct.Struct("=IHHII")
_DIAG_MSG = struct.Struct("=BBHI8x")  # family, type, num, ino, cookie
_NLATTR = struct.Struct("=HH")


@dataclass(frozen=True)
class SocketRings:
    """What sock_diag reports about one AF_PACKET socket."""

    ifindex: int
    version: int
    rx: RxRing | None


def socket_rings(fd: int) -> SocketRings:
    """The ring layout of the AF_PACKET socket ``fd`` (any process's copy of it)."""
    try:
        st = os.fstat(fd)
    except OSError as e:
        raise NetdevError(f"fd {fd}: {e.strerror}") from None
    ino = st.st_ino
    req = struct.pack("=BBHII8x", socket.AF_PACKET, 0, 0, ino,
                      PACKET_SHOW_INFO | PACKET_SHOW_RING_CFG)
    msg = _NLMSGHDR.pack(_NLMSGHDR.size + len(req), SOCK_DIAG_BY_FAMILY,
                         NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + req
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(5.0)
        nl.send(msg)
        found = None
        while True:
            data = nl.recv(1 << 16)
            off = 0
            while off + _NLMSGHDR.size <= len(data):
                length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, off)
                if length < _NLMSGHDR.size:
                    raise NetdevError("sock_diag: malformed netlink reply")
                body = off + _NLMSGHDR.size
                if kind == NLMSG_DONE:
                    if found is None:
                        raise NetdevError(f"fd {fd} is not an AF_PACKET socket of this "
                                          "network namespace")
                    return found
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, body)[0]
                    raise NetdevError(f"sock_diag for AF_PACKET failed: "
                                      f"{os.strerror(code) if code else 'error'} (is "
                                      f"packet_diag available?)")
                if found is None and _DIAG_MSG.unpack_from(data, body)[3] == ino:
                    found = _parse_diag(data, body + _DIAG_MSG.size, off + length)
                off += (length + 3) & ~3


def _parse_diag(data: bytes, off: int, end: int) -> SocketRings:
    ifindex = version = 0
    rx = None
    while off + _NLATTR.size <= end:
        alen, atype = _NLATTR.unpack_from(data, off)
        if alen < _NLATTR.size:
            break
        payload = off + _NLATTR.size
        if atype == PACKET_DIAG_INFO:
            ifindex, version = struct.unpack_from("=II", data, payload)
        elif atype == PACKET_DIAG_RX_RING:
            bsize, bnr, fsize, _fnr, tmo, _priv, _feat = struct.unpack_from("=7I", data,
                                                                             payload)
            rx = RxRing(bsize, bnr, fsize, tmo)
        off += (alen + 3) & ~3
    return SocketRings(ifindex, version, rx)


def is_gone(err: OSError) -> bool:
    """Errors that mean the interface is down or no longer exists."""
    return err.errno in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV)


# -- interface facts by ioctl ----------------------------------------------------------

SIOCGIFFLAGS = 0x8913
SIOCGIFHWADDR = 0x8927
SIOCGIFMTU = 0x8921
SIOCGIFINDEX = 0x8933
SIOCETHTOOL = 0x8946
ETHTOOL_GDRVINFO = 0x00000003
IFF_UP = 0x1
IFF_RUNNING = 0x40
IFF_PROMISC = 0x100
ARPHRD_ETHER = 1
IFNAMSIZ = 16


def _ifreq(name: str, op: int, payload: bytes = bytes(24)) -> bytes:
    req = struct.pack("16s", name.encode()) + payload
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return fcntl.ioctl(s, op, req)[16:]


def if_index(name: str) -> int:
    """The interface's ifindex; OSError(ENODEV) when there is none of that name."""
    return struct.unpack_from("i", _ifreq(name, SIOCGIFINDEX))[0]


def if_flags(name: str) -> int:
    return struct.unpack_from("H", _ifreq(name, SIOCGIFFLAGS))[0]


def if_mtu(name: str) -> int:
    return struct.unpack_from("i", _ifreq(name, SIOCGIFMTU))[0]


def if_hwaddr(name: str) -> tuple[int, bytes]:
    """(ARPHRD type, 6-byte address)."""
    family, addr = struct.unpack_from("H6s", _ifreq(name, SIOCGIFHWADDR))
    return family, addr


def if_driver(name: str) -> dict[str, str]:
    """The driver's name, version and firmware version (ethtool -i), {} if unknown."""
    # struct ethtool_drvinfo: cmd, driver[32], version[32], fw_version[32], ...
    info = ctypes.create_string_buffer(struct.pack("I", ETHTOOL_GDRVINFO), 196)
    try:
        _ifreq(name, SIOCETHTOOL, struct.pack("P16x", ctypes.addressof(info)))
    except OSError:
        return {}
    driver, version, firmware = struct.unpack_from("32s32s32s", info.raw, 4)
    out = {"driver_name": driver, "driver_version": version, "firmware_version": firmware}
    return {k: v.split(b"\0", 1)[0].decode(errors="replace") for k, v in out.items()
            if v.split(b"\0", 1)[0]}
