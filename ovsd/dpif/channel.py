"""The control process <-> PMD channel: msgpack messages on a SOCK_SEQPACKET
socketpair, with file descriptors (rx queue sockets, eventfds, memory fds)
travelling beside a message as SCM_RIGHTS.

SEQPACKET keeps message boundaries, so there is no framing to get wrong; a
message is one ``sendmsg``.  Messages are dicts with a ``"t"`` type key.
"""

from __future__ import annotations

import array
import os
import socket

import msgpack

# A SEQPACKET message must fit the socket buffer (net.core.wmem_max, about
# 200 KB by default): senders split larger payloads (rule batches).
MAX_MSG = 160_000
MAX_FDS = 64


class ChannelClosed(Exception):
    """The other side went away."""


class Channel:
    def __init__(self, sock: socket.socket):
        self.sock = sock

    @classmethod
    def pair(cls) -> tuple["Channel", "Channel"]:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for s in (a, b):
            for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                s.setsockopt(socket.SOL_SOCKET, opt, 1 << 20)
        return cls(a), cls(b)

    @classmethod
    def from_fd(cls, fd: int) -> "Channel":
        return cls(socket.socket(fileno=fd))

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, msg: dict, fds: list[int] = ()) -> None:
        data = msgpack.packb(msg, use_bin_type=True)
        if len(data) > MAX_MSG:
            raise ValueError(f"channel message of {len(data)} bytes is over {MAX_MSG}")
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        try:
            self.sock.sendmsg([data], anc)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise ChannelClosed(str(e)) from None

    def try_send(self, msg: dict) -> bool:
        """Send unless the socket buffer is full (then False, nothing sent): for
        what may be dropped rather than make a PMD wait (captured packets)."""
        data = msgpack.packb(msg, use_bin_type=True)
        if len(data) > MAX_MSG:
            raise ValueError(f"channel message of {len(data)} bytes is over {MAX_MSG}")
        try:
            self.sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except (BrokenPipeError, ConnectionResetError) as e:
            raise ChannelClosed(str(e)) from None
        return True

    def recv(self, block: bool = True) -> tuple[dict, list[int]] | None:
        """One message and its fds; None when non-blocking and nothing is there."""
        flags = 0 if block else socket.MSG_DONTWAIT
        try:
            data, anc, msg_flags, _ = self.sock.recvmsg(
                MAX_MSG, socket.CMSG_SPACE(MAX_FDS * 4), flags)
        except BlockingIOError:
            return None
        except (ConnectionResetError, OSError) as e:
            raise ChannelClosed(str(e)) from None
        fds: list[int] = []
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                arr = array.array("i")
                arr.frombytes(payload[:len(payload) - len(payload) % arr.itemsize])
                fds.extend(arr)
        if not data:
            for fd in fds:
                os.close(fd)
            raise ChannelClosed("the other side closed the channel")
        if msg_flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            for fd in fds:
                os.close(fd)
            raise ChannelClosed("a channel message was truncated")
        return msgpack.unpackb(data, raw=False, strict_map_key=False), fds

    def close(self) -> None:
        self.sock.close()
