"""A small vhost-user frontend in Python, for tests that need a guest that
misbehaves on purpose (real frontends never do): it speaks the protocol over
a real unix socket, shares memfd guest RAM, and drives its rings with
VirtqDriver.  The well-behaved parts follow the order dpdk-testpmd uses.
"""

from __future__ import annotations

import array
import os
import socket
import struct
import time

from ovsd.netdev.vhost_user.protocol import (FLAG_NEED_REPLY, HEADER, MEM_REGION, U64,
                                             VERSION, VRING_ADDR, VRING_STATE, F, P, Req,
                                             bits)
from tests.support.virtq_driver import GuestRam, VirtqDriver

FEATURES = bits(F.VERSION_1, F.NET_MRG_RXBUF, F.PROTOCOL_FEATURES, F.RING_INDIRECT_DESC)
PROTOCOL = bits(P.MQ, P.REPLY_ACK)


class Frontend:
    """One connection to a vhost-user back-end; ring 0 = guest rx, 1 = guest tx."""

    def __init__(self, path, *, ram_size: int = 4 << 20, num: int = 256,
                 timeout: float = 10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.ram = GuestRam([ram_size])
        self.rx = VirtqDriver(self.ram, num)
        self.tx = VirtqDriver(self.ram, num)
        self._eventfds: list[int] = []

    # -- messages ---------------------------------------------------------------------

    def send(self, req: int, payload: bytes = b"", fds=(), *, need_reply: bool = False,
             flags: int | None = None) -> None:
        if flags is None:
            flags = VERSION | (FLAG_NEED_REPLY if need_reply else 0)
        data = HEADER.pack(req, flags, len(payload)) + payload
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        self.sock.sendmsg([data], anc)

    def recv_reply(self) -> tuple[int, bytes]:
        head = self._recv_exact(HEADER.size)
        req, _flags, size = HEADER.unpack(head)
        return req, self._recv_exact(size)

    def _recv_exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("the back-end closed the connection")
            out += chunk
        return out

    def request_u64(self, req: int) -> int:
        self.send(req)
        _, payload = self.recv_reply()
        return U64.unpack(payload)[0]

    def ack(self, req: int, payload: bytes = b"", fds=()) -> int:
        """A message sent with NEED_REPLY; returns the back-end's status (0 = ok)."""
        self.send(req, payload, fds, need_reply=True)
        _, data = self.recv_reply()
        return U64.unpack(data)[0]

    def eventfd(self) -> int:
        fd = os.eventfd(0, os.EFD_NONBLOCK)
        self._eventfds.append(fd)
        return fd

    # -- the handshake -------------------------------------------------------------------

    def mem_table_payload(self) -> bytes:
        regions = self.ram.regions
        payload = struct.pack("<II", len(regions), 0)
        for r in regions:
            payload += MEM_REGION.pack(r.gpa, r.size, r.uva, r.mmap_offset)
        return payload

    def negotiate(self, features: int = FEATURES, protocol: int = PROTOCOL) -> None:
        self.send(Req.SET_OWNER)
        offered = self.request_u64(Req.GET_FEATURES)
        assert features & ~offered == 0, f"back-end does not offer {features & ~offered:x}"
        self.request_u64(Req.GET_PROTOCOL_FEATURES)
        self.send(Req.SET_PROTOCOL_FEATURES, U64.pack(protocol))
        for i in (0, 1):
            self.send(Req.SET_VRING_CALL, U64.pack(i), [self.eventfd()])
        self.send(Req.SET_FEATURES, U64.pack(features))
        assert self.ack(Req.SET_MEM_TABLE, self.mem_table_payload(), self.ram.fds) == 0

    def setup_ring(self, index: int, driver: VirtqDriver) -> None:
        self.send(Req.SET_VRING_NUM, VRING_STATE.pack(index, driver.num))
        self.send(Req.SET_VRING_BASE, VRING_STATE.pack(index, driver.start_idx))
        desc, avail, used = driver.addrs
        self.send(Req.SET_VRING_ADDR, VRING_ADDR.pack(index, 0, desc, used, avail, 0))
        self.send(Req.SET_VRING_KICK, U64.pack(index), [self.eventfd()])

    def start(self) -> None:
        """The whole handshake: both rings of queue pair 0 ready.  The final
        GET_FEATURES round trip makes sure the back-end processed everything."""
        self.negotiate()
        self.setup_ring(0, self.rx)
        self.setup_ring(1, self.tx)
        for i in (0, 1):
            self.send(Req.SET_VRING_ENABLE, VRING_STATE.pack(i, 1))
        self.request_u64(Req.GET_FEATURES)

    # -- traffic -----------------------------------------------------------------------------

    def post_rx_buffers(self, n: int, size: int = 2048) -> None:
        for _ in range(n):
            self.rx.add_rx([size])

    def transmit(self, frames: list[bytes]) -> None:
        for f in frames:
            self.tx.add_tx(f)

    def wait_tx_done(self, n: int, timeout: float = 10.0) -> None:
        done = 0
        deadline = time.monotonic() + timeout
        while done < n:
            done += len(self.tx.reap_tx())
            if time.monotonic() > deadline:
                raise AssertionError(f"the back-end consumed {done} of {n} transmitted frames")
            time.sleep(0.01)

    def receive(self, n: int, timeout: float = 10.0) -> list[bytes]:
        out: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            out += [f.data for f in self.rx.read_rx(12, mergeable=True)]
            time.sleep(0.01)
        return out

    def closed_by_peer(self, timeout: float = 10.0) -> bool:
        """True when the back-end closes the connection within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(4096):
                    return True
        except socket.timeout:
            return False
        except ConnectionError:
            return True

    def close(self) -> None:
        self.sock.close()
        for fd in self._eventfds:
            os.close(fd)
        self._eventfds = []
        self.ram.close()

    def __enter__(self) -> "Frontend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
