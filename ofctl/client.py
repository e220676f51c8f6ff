"""A small JSON-RPC 2.0 client for ovsd's unix socket (one JSON object per line)."""

from __future__ import annotations

import itertools
import json
import os
import socket

DEFAULT_RUNDIR = "/var/run/ovsd"
_ids = itertools.count(1)


class OfctlError(Exception):
    """Something the user should read; ofctl prints it and exits with status 1."""


def rundir_default() -> str:
    return os.environ.get("OVSD_RUNDIR") or DEFAULT_RUNDIR


class RpcClient:
    def __init__(self, rundir: str, timeout: float = 60.0):
        self.rundir = rundir
        self.path = os.path.join(rundir, "ovsd.sock")
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""

    def _connect(self) -> socket.socket:
        if self._sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(self.timeout)
            try:
                s.connect(self.path)
            except OSError as e:
                s.close()
                raise OfctlError(
                    f"cannot connect to ovsd at {self.path}: {e.strerror or e}\n"
                    f"Is ovsd running with --rundir {self.rundir}? Start it with "
                    f"'ovsd --rundir {self.rundir}', or point ofctl at the right one "
                    f"with --rundir or OVSD_RUNDIR.") from None
            self._sock = s
        return self._sock

    def call(self, method: str, **params):
        sock = self._connect()
        req_id = next(_ids)
        line = json.dumps({"jsonrpc": "2.0", "id": req_id, "method": method,
                           "params": params}) + "\n"
        try:
            sock.sendall(line.encode())
            reply = self._read_line(sock)
        except socket.timeout:
            raise OfctlError(f"ovsd did not answer '{method}' within {self.timeout:g} s") from None
        except OSError as e:
            raise OfctlError(f"lost the connection to ovsd at {self.path}: {e.strerror or e}") from None
        try:
            msg = json.loads(reply)
        except ValueError:
            raise OfctlError(f"ovsd sent a reply that is not JSON: {reply[:200]!r}") from None
        if "error" in msg:
            err = msg["error"]
            raise OfctlError(err.get("message", "unknown error"))
        return msg.get("result")

    def _read_line(self, sock: socket.socket) -> bytes:
        while b"\n" not in self._buf:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise OSError("ovsd closed the connection")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
