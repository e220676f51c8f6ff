"""The XDP side of an afxdp port: our program, its XSKMAP, attaching it.

The program is five instructions kept here as bytes: it looks up the frame's
rx queue in the XSKMAP and redirects the frame to the XDP socket found
there; a queue with no socket gets XDP_PASS (the low bits of
bpf_redirect_map's flags, kernel 5.3 and later), so the kernel stack still
sees everything ovsd does not take.

Everything goes through the bpf(2) syscall (ctypes) and rtnetlink (our own
small requests on a NETLINK_ROUTE socket: we want the kernel's extended ack
text and a signed -1 for "no program", which is simpler to build than to
coax out of a generic library).  Errors are ``BpfError``: the operation,
the errno text, what probably caused it and what to do.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import socket
import struct

# -- bpf(2) ------------------------------------------------------------------------------

_NR_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine(), 321)

BPF_MAP_CREATE = 0
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_PROG_LOAD = 5
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15

BPF_MAP_TYPE_XSKMAP = 17
BPF_PROG_TYPE_XDP = 6
BPF_PSEUDO_MAP_FD = 1
BPF_OBJ_NAME_LEN = 16
BPF_FUNC_redirect_map = 51
XDP_PASS = 2
XDP_MD_RX_QUEUE_INDEX = 16  # offsetof(struct xdp_md, rx_queue_index)

PROG_NAME = "ovsd_xsk"
MAP_NAME = "ovsd_xsks"
LICENSE = b"GPL\0"
LOG_SIZE = 1 << 16

# union bpf_attr, one layout per command (only the fields we set).
MAP_CREATE_ATTR = struct.Struct("<7I16s")  # type, key, value, max, flags, inner, numa, name
PROG_LOAD_ATTR = struct.Struct("<IIQQIIQII16s")  # type, cnt, insns, license, log..., name
MAP_ELEM_ATTR = struct.Struct("<I4xQQQ")  # map_fd, key, value, flags
GET_FD_BY_ID_ATTR = struct.Struct("<III")  # id, next_id, open_flags
OBJ_INFO_ATTR = struct.Struct("<IIQ")  # bpf_fd, info_len, info
# struct bpf_prog_info up to its name: type, id, ..., name at 64.
PROG_INFO = struct.Struct("<II56x16s")

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint]


class BpfError(OSError):
    """A bpf(2) or XDP attach operation failed; str() is the whole explanation."""

    def __init__(self, err: int, message: str):
        super().__init__(err, message)

    def __str__(self) -> str:
        return self.strerror


def bpf(cmd: int, attr: bytes) -> int:
    """bpf(cmd, attr): the syscall's non-negative result, or OSError with errno."""
    buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    ret = _syscall(_NR_BPF, cmd, buf, len(attr))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


# -- the program -------------------------------------------------------------------------

_INSN = struct.Struct("<BBhi")  # code, dst | src << 4, off, imm


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return _INSN.pack(code, dst | src << 4, off, imm)


def program(map_fd: int) -> bytes:
    """The XDP program: return bpf_redirect_map(&xskmap, ctx->rx_queue_index, XDP_PASS)."""
    return b"".join((
        _insn(0x61, dst=2, src=1, off=XDP_MD_RX_QUEUE_INDEX),  # r2 = *(u32 *)(r1 + 16)
        _insn(0x18, dst=1, src=BPF_PSEUDO_MAP_FD, imm=map_fd),  # r1 = map (two slots)
        _insn(0x00),
        _insn(0xB7, dst=3, imm=XDP_PASS),  # r3 = XDP_PASS
        _insn(0x85, imm=BPF_FUNC_redirect_map),  # r0 = redirect_map(r1, r2, r3)
        _insn(0x95),  # exit
    ))


def map_create_attr(max_entries: int) -> bytes:
    return MAP_CREATE_ATTR.pack(BPF_MAP_TYPE_XSKMAP, 4, 4, max_entries, 0, 0, 0,
                                MAP_NAME.encode())


def prog_load_attr(insns_addr: int, insn_cnt: int, license_addr: int,
                   log_addr: int = 0, log_size: int = 0) -> bytes:
    return PROG_LOAD_ATTR.pack(BPF_PROG_TYPE_XDP, insn_cnt, insns_addr, license_addr,
                               1 if log_addr else 0, log_size, log_addr, 0, 0,
                               PROG_NAME.encode())


def _addr(buf) -> int:
    return ctypes.addressof(buf)


def explain(op: str, err: int, iface: str = "", log: str = "", extack: str = "") -> str:
    """The message of a failed ``op``: errno text, probable cause, what to do."""
    text = f"{op}: {os.strerror(err)}"
    where = iface or "the interface"
    hint = ""
    if op == "BPF_MAP_CREATE" and err in (errno.EPERM, errno.ENOMEM):
        hint = ("locked memory is probably exhausted (RLIMIT_MEMLOCK, `ulimit -l`; "
                "kernels before 5.11 charge BPF maps to it): raise it, e.g. "
                "LimitMEMLOCK=infinity, or run as root with CAP_SYS_ADMIN/CAP_BPF")
    elif op == "BPF_MAP_CREATE" and err == errno.EINVAL:
        hint = "the kernel has no XSKMAP (CONFIG_XDP_SOCKETS, Linux 4.18 or later)"
    elif op == "BPF_PROG_LOAD" and err == errno.EPERM:
        hint = ("loading BPF programs needs CAP_BPF and CAP_NET_ADMIN (or CAP_SYS_ADMIN), "
                "or locked memory ran out (RLIMIT_MEMLOCK): run ovsd as root")
    elif op == "BPF_PROG_LOAD" and err in (errno.EINVAL, errno.EACCES):
        hint = ("the verifier rejected the program (bpf_redirect_map with a fallback "
                "action needs Linux 5.3 or later)")
    elif op.startswith("attach"):
        if err in (errno.EBUSY, errno.EEXIST):
            hint = (f"a program is already attached to {where} (by someone else): detach "
                    f"it with `ip link set dev {where} xdp off` (`xdpgeneric off` for "
                    "generic mode) or choose another interface")
        elif err == errno.EOPNOTSUPP:
            hint = ("driver has no native XDP: use options:xdp-mode=generic")
        elif err == errno.EPERM:
            hint = "attaching XDP programs needs CAP_NET_ADMIN: run ovsd as root"
        elif err == errno.ENODEV:
            hint = f"{where} does not exist (any more)"
        elif err == errno.EINVAL:
            hint = (f"{where} refused the program in this mode (MTU too large for "
                    "native XDP, or too few rx queues for the peer's tx queues on a "
                    "veth): try options:xdp-mode=generic")
    elif op.startswith("BPF_MAP_UPDATE_ELEM") and err == errno.E2BIG:
        hint = "queue beyond the map's max_queues"
    elif op.startswith("BPF_MAP_UPDATE_ELEM") and err in (errno.EOPNOTSUPP, errno.EINVAL,
                                                          errno.ENOTSOCK):
        hint = "the fd is not an XDP socket bound to an interface"
    parts = [text]
    if extack:
        parts.append(f"kernel says: {extack}")
    if hint:
        parts.append(hint)
    msg = "; ".join(parts)
    if log:
        msg += "\nverifier log:\n" + log.strip()
    return msg


def _fail(op: str, e: OSError, **kw) -> BpfError:
    return BpfError(e.errno, explain(op, e.errno, **kw))


class XskProgram:
    """Our XDP program and its XSKMAP (one slot per rx queue)."""

    def __init__(self, prog_fd: int, map_fd: int, max_queues: int):
        self.prog_fd = prog_fd
        self.map_fd = map_fd
        self.max_queues = max_queues
        self.prog_id = prog_info(prog_fd)[1]

    @classmethod
    def load(cls, max_queues: int) -> "XskProgram":
        if max_queues < 1:
            raise ValueError(f"max_queues={max_queues}: expected at least 1")
        try:
            map_fd = bpf(BPF_MAP_CREATE, map_create_attr(max_queues))
        except OSError as e:
            raise _fail("BPF_MAP_CREATE", e) from None
        try:
            prog_fd = _load_program(map_fd)
            try:
                return cls(prog_fd, map_fd, max_queues)
            except BaseException:
                os.close(prog_fd)
                raise
        except BaseException:
            os.close(map_fd)
            raise

    def set_socket(self, queue: int, xsk_fd: int) -> None:
        key, value = ctypes.c_uint32(queue), ctypes.c_uint32(xsk_fd)
        try:
            bpf(BPF_MAP_UPDATE_ELEM, MAP_ELEM_ATTR.pack(self.map_fd, _addr(key),
                                                        _addr(value), 0))
        except OSError as e:
            raise _fail(f"BPF_MAP_UPDATE_ELEM (queue {queue} of {self.max_queues})",
                        e) from None

    def clear_socket(self, queue: int) -> None:
        key = ctypes.c_uint32(queue)
        try:
            bpf(BPF_MAP_DELETE_ELEM, MAP_ELEM_ATTR.pack(self.map_fd, _addr(key), 0, 0))
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise _fail(f"BPF_MAP_DELETE_ELEM (queue {queue})", e) from None

    def close(self) -> None:
        for name in ("prog_fd", "map_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                setattr(self, name, -1)
                os.close(fd)

    def __enter__(self) -> "XskProgram":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _load_program(map_fd: int) -> int:
    code = program(map_fd)
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(LICENSE, len(LICENSE))
    try:
        return bpf(BPF_PROG_LOAD, prog_load_attr(_addr(insns), len(code) // 8, _addr(lic)))
    except OSError as e:
        first = e
    # Load again with a log buffer only now: the log is for the message.
    log = ctypes.create_string_buffer(LOG_SIZE)
    try:
        return bpf(BPF_PROG_LOAD, prog_load_attr(_addr(insns), len(code) // 8, _addr(lic),
                                                 _addr(log), LOG_SIZE))
    except OSError:
        pass
    text = log.value.decode(errors="replace")
    raise _fail("BPF_PROG_LOAD", first, log=text) from None


def prog_info(prog_fd: int) -> tuple[int, int, str]:
    """(type, id, name) of the program ``prog_fd``."""
    info = ctypes.create_string_buffer(PROG_INFO.size)
    try:
        bpf(BPF_OBJ_GET_INFO_BY_FD, OBJ_INFO_ATTR.pack(prog_fd, PROG_INFO.size, _addr(info)))
    except OSError as e:
        raise _fail("BPF_OBJ_GET_INFO_BY_FD", e) from None
    kind, prog_id, name = PROG_INFO.unpack(info.raw)
    return kind, prog_id, name.split(b"\0", 1)[0].decode(errors="replace")


def _prog_fd_by_id(prog_id: int) -> int | None:
    try:
        return bpf(BPF_PROG_GET_FD_BY_ID, GET_FD_BY_ID_ATTR.pack(prog_id, 0, 0))
    except OSError as e:
        if e.errno == errno.ENOENT:
            return None
        raise _fail(f"BPF_PROG_GET_FD_BY_ID ({prog_id})", e) from None


def prog_name(prog_id: int) -> str | None:
    """The name of the loaded program ``prog_id``, None when there is none."""
    fd = _prog_fd_by_id(prog_id)
    if fd is None:
        return None
    try:
        return prog_info(fd)[2]
    finally:
        os.close(fd)


# -- rtnetlink ---------------------------------------------------------------------------

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_SETLINK = 19
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200
NLMSG_ERROR = 2
NLMSGERR_ATTR_MSG = 1
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

IFLA_EXT_MASK = 29
IFLA_NUM_TX_QUEUES = 31
IFLA_NUM_RX_QUEUES = 32
IFLA_XDP = 43
IFLA_XDP_FD = 1
IFLA_XDP_ATTACHED = 2
IFLA_XDP_FLAGS = 3
IFLA_XDP_PROG_ID = 4
IFLA_XDP_DRV_PROG_ID = 5
IFLA_XDP_SKB_PROG_ID = 6
IFLA_XDP_HW_PROG_ID = 7
IFLA_XDP_EXPECTED_FD = 8
RTEXT_FILTER_SKIP_STATS = 1 << 3

XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3
XDP_FLAGS_REPLACE = 1 << 4
MODE_FLAGS = {"native": XDP_FLAGS_DRV_MODE, "generic": XDP_FLAGS_SKB_MODE,
              "offload": XDP_FLAGS_HW_MODE}
# IFLA_XDP_ATTACHED values for one attached program.
_ATTACHED_MODES = {1: "native", 2: "generic", 3: "offload"}
_MODE_IDS = ((IFLA_XDP_DRV_PROG_ID, "native"), (IFLA_XDP_SKB_PROG_ID, "generic"),
             (IFLA_XDP_HW_PROG_ID, "offload"))

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_NLA = struct.Struct("=HH")


def nla(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    length = _NLA.size + len(payload)
    return _NLA.pack(length, kind) + payload + bytes(-length % 4)


def parse_nlas(data: bytes, off: int = 0, end: int | None = None) -> dict[int, bytes]:
    end = len(data) if end is None else end
    out: dict[int, bytes] = {}
    while off + _NLA.size <= end:
        length, kind = _NLA.unpack_from(data, off)
        if length < _NLA.size:
            break
        out.setdefault(kind & NLA_TYPE_MASK, data[off + _NLA.size:off + length])
        off += (length + 3) & ~3
    return out


def xdp_setlink_msg(ifindex: int, fd: int, flags: int, expected_fd: int | None = None,
                    seq: int = 1) -> bytes:
    """RTM_SETLINK with IFLA_XDP {FD, FLAGS[, EXPECTED_FD]} for ``ifindex``."""
    inner = nla(IFLA_XDP_FD, struct.pack("=i", fd)) + nla(IFLA_XDP_FLAGS,
                                                          struct.pack("=I", flags))
    if expected_fd is not None:
        inner += nla(IFLA_XDP_EXPECTED_FD, struct.pack("=i", expected_fd))
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, 0, 0) + nla(IFLA_XDP | NLA_F_NESTED,
                                                                       inner)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_SETLINK,
                          NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


def parse_nlmsgerr(data: bytes, off: int, flags: int, end: int) -> tuple[int, str]:
    """(errno, extack message) of the NLMSG_ERROR message whose payload is at ``off``."""
    code = -struct.unpack_from("=i", data, off)[0]
    extack = ""
    if flags & NLM_F_ACK_TLVS:
        orig_len = _NLMSGHDR.unpack_from(data, off + 4)[0]
        tlvs = off + 4 + (_NLMSGHDR.size if flags & NLM_F_CAPPED else orig_len)
        msg = parse_nlas(data, tlvs, end).get(NLMSGERR_ATTR_MSG)
        if msg:
            extack = msg.split(b"\0", 1)[0].decode(errors="replace")
    return code, extack


def _rtnl(request: bytes) -> list[tuple[int, bytes]]:
    """Send one request; its replies as (type, payload) until the ack or error.
    An error reply raises OSError(errno) whose .extack is the kernel's text."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as nl:
        nl.settimeout(5.0)
        for opt in (NETLINK_EXT_ACK, NETLINK_CAP_ACK):
            try:
                nl.setsockopt(SOL_NETLINK, opt, 1)
            except OSError:
                pass  # older kernels: no extack text
        nl.bind((0, 0))
        nl.send(request)
        seq = _NLMSGHDR.unpack_from(request)[3]
        replies: list[tuple[int, bytes]] = []
        while True:
            data = nl.recv(1 << 18)
            off = 0
            while off + _NLMSGHDR.size <= len(data):
                length, kind, flags, rseq, _pid = _NLMSGHDR.unpack_from(data, off)
                if length < _NLMSGHDR.size:
                    raise OSError(errno.EPROTO, "malformed netlink reply")
                body, end = off + _NLMSGHDR.size, off + length
                off += (length + 3) & ~3
                if rseq != seq:
                    continue
                if kind == NLMSG_ERROR:
                    code, extack = parse_nlmsgerr(data, body, flags, end)
                    if code:
                        err = OSError(code, os.strerror(code))
                        err.extack = extack  # type: ignore[attr-defined]
                        raise err
                    return replies
                replies.append((kind, data[body:end]))
                if not flags & 0x2:  # not NLM_F_MULTI: a single answer
                    return replies


def _ifname(ifindex: int) -> str:
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return f"ifindex {ifindex}"


def _getlink(ifindex: int) -> dict[int, bytes]:
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, 0, 0) + nla(
        IFLA_EXT_MASK, struct.pack("=I", RTEXT_FILTER_SKIP_STATS))
    req = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_GETLINK, NLM_F_REQUEST, 1, 0) + body
    for kind, payload in _rtnl(req):
        if kind == RTM_NEWLINK:
            return parse_nlas(payload, _IFINFOMSG.size)
    raise OSError(errno.ENODEV, f"no link with ifindex {ifindex}")


def queue_counts(ifindex: int) -> tuple[int, int]:
    """(rx queues, tx queues) of the interface, as the kernel reports them."""
    attrs = _getlink(ifindex)
    rx = attrs.get(IFLA_NUM_RX_QUEUES)
    tx = attrs.get(IFLA_NUM_TX_QUEUES)
    return (struct.unpack("=I", rx)[0] if rx else 1, struct.unpack("=I", tx)[0] if tx else 1)


def parse_xdp(xdp: bytes) -> list[tuple[str, int]]:
    """[(mode, prog_id)] from the payload of an IFLA_XDP attribute."""
    attrs = parse_nlas(xdp)
    u32 = {k: struct.unpack_from("=I", v)[0] for k, v in attrs.items() if len(v) >= 4}
    out = [(mode, u32[k]) for k, mode in _MODE_IDS if u32.get(k)]
    if not out and u32.get(IFLA_XDP_PROG_ID):
        mode = _ATTACHED_MODES.get(attrs.get(IFLA_XDP_ATTACHED, b"\0")[0], "native")
        out.append((mode, u32[IFLA_XDP_PROG_ID]))
    return out


def attached(ifindex: int) -> list[tuple[str, int]]:
    """The XDP programs attached to the interface: [(mode, prog_id)]."""
    xdp = _getlink(ifindex).get(IFLA_XDP)
    return parse_xdp(xdp) if xdp else []


def _mode_flag(mode: str) -> int:
    if mode not in ("native", "generic"):
        raise ValueError(f"XDP mode {mode!r}: expected 'native' or 'generic'")
    return MODE_FLAGS[mode]


def attach(ifindex: int, prog_fd: int, mode: str) -> None:
    """Attach ``prog_fd`` in ``mode``; never replaces a program already there."""
    flags = _mode_flag(mode) | XDP_FLAGS_UPDATE_IF_NOEXIST
    try:
        _rtnl(xdp_setlink_msg(ifindex, prog_fd, flags))
    except OSError as e:
        name = _ifname(ifindex)
        raise BpfError(e.errno, explain(f"attach XDP ({mode}) to {name}", e.errno,
                                        iface=name, extack=getattr(e, "extack", ""))) from None


def detach(ifindex: int, mode: str, expected_prog_id: int | None = None) -> bool:
    """Remove the program attached in ``mode``; with ``expected_prog_id``, only
    that program (atomically, by XDP_FLAGS_REPLACE).  False when nothing, or
    another program, was attached in that mode."""
    flag = _mode_flag(mode)
    try:
        present = dict(attached(ifindex)).get(mode)
    except OSError as e:
        raise _fail(f"query XDP of {_ifname(ifindex)}", e) from None
    if present is None or (expected_prog_id is not None and present != expected_prog_id):
        return False
    expected_fd = None
    if expected_prog_id is not None:
        expected_fd = _prog_fd_by_id(expected_prog_id)
        if expected_fd is None:
            return False
    try:
        _rtnl(xdp_setlink_msg(ifindex, -1, flag | (XDP_FLAGS_REPLACE if expected_fd is not None
                                                   else 0), expected_fd))
    except OSError as e:
        if e.errno == errno.EEXIST and expected_fd is not None:
            return False  # replaced by someone else between the query and now
        name = _ifname(ifindex)
        raise BpfError(e.errno, explain(f"detach XDP ({mode}) from {name}", e.errno,
                                        iface=name,
                                        extack=getattr(e, "extack", ""))) from None
    finally:
        if expected_fd is not None:
            os.close(expected_fd)
    return True
