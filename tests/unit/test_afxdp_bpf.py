"""The AF_XDP library's encodings and messages, without a kernel: the XDP
program's bytes, bpf_attr and netlink packing, and the text of each error."""

from __future__ import annotations

import ctypes
import errno
import os
import struct

import pytest

from ovsd.netdev.afxdp import bpf, xsk
from ovsd.netdev.afxdp.bpf import BpfError


# -- the program ---------------------------------------------------------------------

def test_program_bytes():
    assert bpf.program(7).hex(" ", 8).split() == [
        "6112100000000000",  # r2 = *(u32 *)(r1 + 16): ctx->rx_queue_index
        "1811000007000000",  # r1 = map fd 7 (BPF_PSEUDO_MAP_FD) ...
        "0000000000000000",  # ... second half of the 16-byte load
        "b703000002000000",  # r3 = XDP_PASS: the action for a queue with no socket
        "8500000033000000",  # call bpf_redirect_map (51)
        "9500000000000000",  # exit with its result
    ]


def test_program_map_fd_is_the_only_variable():
    a, b = bpf.program(3), bpf.program(0x12345)
    assert len(a) == len(b) == 48
    assert [i for i in range(48) if a[i] != b[i]] == [12, 13, 14]
    assert struct.unpack_from("<i", b, 12)[0] == 0x12345


# -- bpf_attr --------------------------------------------------------------------------

def test_map_create_attr():
    attr = bpf.map_create_attr(4)
    assert len(attr) == 44
    assert struct.unpack_from("<7I", attr) == (bpf.BPF_MAP_TYPE_XSKMAP, 4, 4, 4, 0, 0, 0)
    assert attr[28:44] == b"ovsd_xsks".ljust(16, b"\0")


def test_prog_load_attr_offsets():
    attr = bpf.prog_load_attr(0x1000, 6, 0x2000, 0x3000, 65536)
    assert len(attr) == 64
    assert struct.unpack_from("<II", attr, 0) == (bpf.BPF_PROG_TYPE_XDP, 6)
    assert struct.unpack_from("<Q", attr, 8)[0] == 0x1000  # insns
    assert struct.unpack_from("<Q", attr, 16)[0] == 0x2000  # license
    assert struct.unpack_from("<II", attr, 24) == (1, 65536)  # log_level, log_size
    assert struct.unpack_from("<Q", attr, 32)[0] == 0x3000  # log_buf
    assert attr[48:64] == b"ovsd_xsk".ljust(16, b"\0")
    no_log = bpf.prog_load_attr(0x1000, 6, 0x2000)
    assert struct.unpack_from("<IIQ", no_log, 24) == (0, 0, 0)


def test_small_attrs():
    assert bpf.MAP_ELEM_ATTR.pack(5, 0x10, 0x20, 0) == struct.pack("<IIQQQ", 5, 0, 0x10,
                                                                   0x20, 0)
    assert bpf.OBJ_INFO_ATTR.pack(9, 80, 0x30) == struct.pack("<IIQ", 9, 80, 0x30)
    assert bpf.PROG_INFO.size == 80  # struct bpf_prog_info up to and with name[16]
    raw = struct.pack("<II56x16s", 6, 42, b"ovsd_xsk")
    assert bpf.PROG_INFO.unpack(raw)[:2] == (6, 42)


# -- netlink ---------------------------------------------------------------------------

def test_xdp_setlink_message():
    msg = bpf.xdp_setlink_msg(7, -1, bpf.XDP_FLAGS_SKB_MODE | bpf.XDP_FLAGS_REPLACE,
                              expected_fd=12, seq=3)
    length, kind, flags, seq, _pid = struct.unpack_from("=IHHII", msg)
    assert (length, kind, seq) == (len(msg), bpf.RTM_SETLINK, 3)
    assert flags == bpf.NLM_F_REQUEST | bpf.NLM_F_ACK
    assert struct.unpack_from("=BxHiII", msg, 16)[2] == 7  # ifinfomsg.ifi_index
    nla_len, nla_type = struct.unpack_from("=HH", msg, 32)
    assert nla_type == bpf.IFLA_XDP | bpf.NLA_F_NESTED and 32 + nla_len == len(msg)
    inner = bpf.parse_nlas(msg, 36)
    assert struct.unpack("=i", inner[bpf.IFLA_XDP_FD])[0] == -1
    assert struct.unpack("=I", inner[bpf.IFLA_XDP_FLAGS])[0] == 2 | 16
    assert struct.unpack("=i", inner[bpf.IFLA_XDP_EXPECTED_FD])[0] == 12


def test_attach_flags_never_replace():
    msg = bpf.xdp_setlink_msg(3, 9, bpf.MODE_FLAGS["native"] | bpf.XDP_FLAGS_UPDATE_IF_NOEXIST)
    inner = bpf.parse_nlas(msg, 36)
    assert struct.unpack("=I", inner[bpf.IFLA_XDP_FLAGS])[0] == 4 | 1
    assert bpf.IFLA_XDP_EXPECTED_FD not in inner


def _u32(kind: int, value: int) -> bytes:
    return bpf.nla(kind, struct.pack("=I", value))


def test_parse_xdp_single_and_multi():
    single = bpf.nla(bpf.IFLA_XDP_ATTACHED, b"\x02") + _u32(bpf.IFLA_XDP_PROG_ID, 42)
    assert bpf.parse_xdp(single) == [("generic", 42)]
    single += _u32(bpf.IFLA_XDP_SKB_PROG_ID, 42)
    assert bpf.parse_xdp(single) == [("generic", 42)]
    multi = (bpf.nla(bpf.IFLA_XDP_ATTACHED, b"\x04") + _u32(bpf.IFLA_XDP_DRV_PROG_ID, 5)
             + _u32(bpf.IFLA_XDP_HW_PROG_ID, 6))
    assert bpf.parse_xdp(multi) == [("native", 5), ("offload", 6)]
    assert bpf.parse_xdp(bpf.nla(bpf.IFLA_XDP_ATTACHED, b"\x00")) == []


def test_nlmsgerr_extack():
    text = b"XDP program already attached\0"
    tlvs = bpf.nla(bpf.NLMSGERR_ATTR_MSG, text)
    orig = struct.pack("=IHHII", 60, bpf.RTM_SETLINK, 5, 1, 0)
    payload = struct.pack("=i", -errno.EBUSY) + orig + tlvs
    flags = bpf.NLM_F_CAPPED | bpf.NLM_F_ACK_TLVS
    assert bpf.parse_nlmsgerr(payload, 0, flags, len(payload)) == (
        errno.EBUSY, "XDP program already attached")
    assert bpf.parse_nlmsgerr(payload, 0, 0, len(payload)) == (errno.EBUSY, "")


# -- messages --------------------------------------------------------------------------

@pytest.mark.parametrize("err", [errno.EPERM, errno.ENOMEM])
def test_map_create_memlock(err):
    text = bpf.explain("BPF_MAP_CREATE", err)
    assert text.startswith(f"BPF_MAP_CREATE: {os.strerror(err)}")
    assert "RLIMIT_MEMLOCK" in text and "ulimit -l" in text


def test_attach_busy_names_the_interface():
    for err in (errno.EBUSY, errno.EEXIST):
        text = bpf.explain("attach XDP (native) to veth7", err, iface="veth7",
                           extack="XDP program already attached")
        assert "a program is already attached to veth7 (by someone else)" in text
        assert "`ip link set dev veth7 xdp off`" in text
        assert "or choose another interface" in text
        assert "kernel says: XDP program already attached" in text


def test_attach_messages():
    assert "driver has no native XDP: use options:xdp-mode=generic" in bpf.explain(
        "attach XDP (native) to eth0", errno.EOPNOTSUPP, iface="eth0")
    assert "CAP_NET_ADMIN" in bpf.explain("attach XDP (native) to eth0", errno.EPERM)
    assert "eth0 does not exist" in bpf.explain("attach XDP (native) to eth0", errno.ENODEV,
                                                iface="eth0")
    assert "xdp-mode=generic" in bpf.explain("attach XDP (native) to eth0", errno.EINVAL,
                                             iface="eth0")


def test_prog_load_and_map_update_messages():
    assert "CAP_BPF" in bpf.explain("BPF_PROG_LOAD", errno.EPERM)
    assert "Linux 5.3" in bpf.explain("BPF_PROG_LOAD", errno.EACCES)
    text = bpf.explain("BPF_PROG_LOAD", errno.EACCES, log="0: R2 !read_ok\n")
    assert text.endswith("\nverifier log:\n0: R2 !read_ok")
    assert "max_queues" in bpf.explain("BPF_MAP_UPDATE_ELEM (queue 9 of 2)", errno.E2BIG)
    assert "not an XDP socket" in bpf.explain("BPF_MAP_UPDATE_ELEM (queue 0 of 1)",
                                              errno.ENOTSOCK)


def test_bpf_error_is_an_oserror_with_the_message():
    e = BpfError(errno.EBUSY, "attach XDP: Device or resource busy; ...")
    assert isinstance(e, OSError) and e.errno == errno.EBUSY
    assert str(e) == "attach XDP: Device or resource busy; ..."


def test_failed_load_retries_with_a_log(monkeypatch):
    """The first load has no log buffer; the error comes from a second with one."""
    calls = []

    def fake_bpf(cmd, attr):
        assert cmd == bpf.BPF_PROG_LOAD
        fields = bpf.PROG_LOAD_ATTR.unpack(attr)
        calls.append(fields[4])  # log_level
        if fields[6]:
            text = b"0: (61) r2 = *(u32 *)(r1 +16)\ninvalid\0"
            ctypes.memmove(fields[6], text, len(text))
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(bpf, "bpf", fake_bpf)
    with pytest.raises(BpfError) as info:
        bpf._load_program(3)
    assert calls == [0, 1]
    assert info.value.errno == errno.EACCES
    assert "verifier log:\n0: (61) r2 = *(u32 *)(r1 +16)\ninvalid" in str(info.value)


def test_modes_are_checked():
    with pytest.raises(ValueError):
        bpf.attach(1, 3, "offload")


# -- xsk messages and geometry -------------------------------------------------------

def test_bind_messages():
    assert "queue 2 of eth0 already has an XDP socket" in xsk.explain_bind(
        errno.EBUSY, "eth0", 2, False)
    assert "eth0 has 2 rx queues (0 to 1)" in xsk.explain_bind(errno.EINVAL, "eth0", 4,
                                                               False, rx_queues=2)
    assert "has 1 rx queue (0 to 0)" in xsk.explain_bind(errno.EINVAL, "v", 1, False, 1)
    assert "driver cannot do zero-copy: use xdp-mode=native or generic" in xsk.explain_bind(
        errno.EOPNOTSUPP, "veth0", 0, True)
    assert "zero-copy" not in xsk.explain_bind(errno.EOPNOTSUPP, "veth0", 0, False)


def test_setup_messages():
    assert "RLIMIT_MEMLOCK" in xsk.explain_setup("register the UMEM (XDP_UMEM_REG)",
                                                 errno.ENOMEM)
    assert "CONFIG_XDP_SOCKETS" in xsk.explain_setup("socket(AF_XDP)", errno.EAFNOSUPPORT)
    assert "power of two" in xsk.explain_setup("register the UMEM (XDP_UMEM_REG)",
                                               errno.EINVAL)


def test_ring_sizes_hold_every_frame_of_their_half():
    assert xsk._ring_sizes(4096, 2048) == {"fill_size": 2048, "comp_size": 2048,
                                           "rx_size": 2048, "tx_size": 2048}
    assert xsk._ring_sizes(8192, 1024)["fill_size"] == 4096
    assert xsk._ring_sizes(128, 64)["comp_size"] == 64


@pytest.mark.parametrize("kw", [{"n_frames": 3000}, {"frame_size": 1024},
                                {"frame_size": 3000}, {"ring_size": 1000}])
def test_geometry_is_checked_before_any_syscall(kw):
    with pytest.raises(ValueError):
        xsk.XskSocket.create(1, 0, zerocopy=False, need_wakeup=True, **kw)


def test_abi_structs():
    assert xsk.SOCKADDR_XDP.size == 16
    assert xsk.UMEM_REG.size == 32
    assert xsk.MMAP_OFFSETS.size == 128
    assert xsk._descs(2).size == 32
