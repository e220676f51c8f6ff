"""Waiting for frames in integration tests: until the expected number came,
then a little longer, so that frames that should not come (duplicates,
leaks) are in the result too."""

from __future__ import annotations

import select
import socket
import time

GRACE = 0.05  # how long to keep watching for frames that should not come


def collect(burst, n: int, timeout: float = 3.0, grace: float = GRACE) -> list:
    """Call ``burst()`` until ``n`` frames came or ``timeout``, then for ``grace``."""
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += burst()
    quiet = time.monotonic() + grace
    while time.monotonic() < quiet:
        got += burst()
    return got


def recv_frames(sock: socket.socket, n: int, timeout: float = 3.0,
                grace: float = GRACE) -> list[bytes]:
    """Up to ``n`` frames from ``sock`` (and whatever follows within ``grace``)."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            break
        got.append(sock.recv(65536))
    while select.select([sock], [], [], grace)[0]:
        got.append(sock.recv(65536))
    return got
