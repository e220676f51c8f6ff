"""OVSDB on sockets: RUNDIR/db.sock (like ovsdb-server's ``punix:``) and,
when configured, TCP on loopback (``ptcp:PORT:127.0.0.1``).

One task per connection reads, splits the stream into JSON values
(:mod:`.jsonrpc`) and hands them to its :class:`~.session.Session`.  A
connection is dropped, with the reason logged, when its stream cannot be
parsed, a message exceeds ``max_message`` bytes, more than ``max_backlog``
bytes wait to be sent to it (a client that does not read its monitor
updates), or it does not answer an inactivity probe (an "echo" request).
Other clients are not affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import tempfile
from typing import Any

from ovsd.ovsdb import jsonrpc
from ovsd.ovsdb.service import Service
from ovsd.ovsdb.session import ECHO_ID, Session

log = logging.getLogger(__name__)

DB_SOCKET_NAME = "db.sock"
DEFAULT_MAX_BACKLOG = 64 << 20
READ_CHUNK = 1 << 16
DEFAULT_TCP_PROBE = 5.0  # seconds, as ovsdb-server's default inactivity probe


class _Connection:
    def __init__(self, server: OvsdbServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, name: str, probe: float | None):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.name = name
        self.probe = probe
        self.dropped: str | None = None
        self.session = Session(server.service, self.send, name)

    def send(self, msg: Any) -> None:
        if self.dropped is not None:
            return
        try:
            data = jsonrpc.encode(msg)
        except (TypeError, ValueError) as e:
            log.error("OVSDB %s: cannot encode a message (%s); dropping it", self.name, e)
            return
        transport = self.writer.transport
        if transport.is_closing():
            self.drop("the connection is closing")
            return
        self.writer.write(data)
        backlog = transport.get_write_buffer_size()
        if backlog > self.server.max_backlog:
            self.drop(f"{backlog} bytes wait to be sent to it (limit "
                      f"{self.server.max_backlog}): it does not read its replies and "
                      "monitor updates")

    def drop(self, reason: str) -> None:
        if self.dropped is None:
            self.dropped = reason
            log.warning("OVSDB %s: dropping the connection: %s", self.name, reason)
            self.session.close()
            self.writer.transport.abort()

    async def run(self) -> None:
        splitter = jsonrpc.JsonSplitter(self.server.max_message)
        probed = False
        try:
            while self.dropped is None:
                try:
                    data = await asyncio.wait_for(self.reader.read(READ_CHUNK),
                                                  self.probe if self.probe else None)
                except asyncio.TimeoutError:
                    if probed:
                        self.drop(f"no reply to an inactivity probe in {self.probe} s")
                        return
                    probed = True
                    self.send(jsonrpc.request("echo", [], ECHO_ID))
                    continue
                if not data:
                    log.debug("OVSDB %s: connection closed by the client", self.name)
                    return
                probed = False
                try:
                    values = splitter.feed(data)
                except jsonrpc.FramingError as e:
                    self.send(jsonrpc.error(None, {"error": "syntax error",
                                                   "details": str(e)}))
                    await self._flush()
                    self.drop(f"bad input: {e}")
                    return
                for value in values:
                    try:
                        await self.session.receive(value)
                    except jsonrpc.BadMessage as e:
                        if e.id is None:
                            self.send(jsonrpc.error(None, {"error": "syntax error",
                                                           "details": str(e)}))
                            await self._flush()
                            self.drop(f"bad JSON-RPC message: {e}")
                            return
                    if self.dropped is not None:
                        return
                await self._flush()
        except (ConnectionError, OSError) as e:
            log.info("OVSDB %s: connection lost: %s", self.name, e)
        finally:
            self.session.close()

    async def _flush(self) -> None:
        # Bounded: the backlog check in send() drops a client that does not read.
        if self.dropped is None and not self.writer.transport.is_closing():
            with contextlib.suppress(ConnectionError):
                if self.writer.transport.get_write_buffer_size() <= self.server.max_backlog:
                    await asyncio.wait_for(self.writer.drain(), 30)


class OvsdbServer:
    def __init__(self, service: Service, unix_path: str | os.PathLike | None = None,
                 tcp: tuple[str, int] | None = None, *, mode: int = 0o660,
                 max_message: int = jsonrpc.DEFAULT_MAX_MESSAGE,
                 max_backlog: int = DEFAULT_MAX_BACKLOG,
                 unix_probe: float | None = None,
                 tcp_probe: float | None = DEFAULT_TCP_PROBE):
        self.service = service
        self.unix_path = os.fspath(unix_path) if unix_path is not None else None
        self.tcp = tcp
        self.mode = mode
        self.max_message = max_message
        self.max_backlog = max_backlog
        self.unix_probe = unix_probe
        self.tcp_probe = tcp_probe
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task] = set()
        self._conns: set[_Connection] = set()
        self._inode: tuple[int, int] | None = None
        self._n = 0

    @property
    def tcp_port(self) -> int | None:
        for srv in self._servers:
            for sock in srv.sockets:
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    return sock.getsockname()[1]
        return None

    async def start(self) -> None:
        try:
            if self.unix_path is not None:
                sock = self._bind_unix()
                self._servers.append(await asyncio.start_unix_server(
                    self._unix_client, sock=sock, limit=READ_CHUNK))
            if self.tcp is not None:
                host, port = self.tcp
                self._servers.append(await asyncio.start_server(
                    self._tcp_client, host, port, limit=READ_CHUNK, reuse_address=True))
        except BaseException:
            await self.close()
            raise

    def _bind_unix(self) -> socket.socket:
        path = self.unix_path
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(st.st_mode):
                raise OSError(f"{path} exists and is not a socket; not replacing it")
            os.unlink(path)  # the pidfile lock says no other ovsd uses this rundir
        # Bound in a private directory and moved into place: never reachable
        # with the wrong permissions.
        private = tempfile.mkdtemp(prefix=".ovsdb-", dir=os.path.dirname(path) or ".")
        tmp = os.path.join(private, "sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(tmp)
            os.chmod(tmp, self.mode)
            os.rename(tmp, path)
            st = os.stat(path)
            self._inode = (st.st_dev, st.st_ino)
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            with contextlib.suppress(OSError):
                os.rmdir(private)
        return sock

    async def _unix_client(self, reader, writer) -> None:
        self._n += 1
        await self._serve(reader, writer, f"unix#{self._n}", self.unix_probe)

    async def _tcp_client(self, reader, writer) -> None:
        peer = writer.get_extra_info("peername")
        name = f"tcp:{peer[0]}:{peer[1]}" if peer else "tcp"
        await self._serve(reader, writer, name, self.tcp_probe)

    async def _serve(self, reader, writer, name: str, probe: float | None) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        conn = _Connection(self, reader, writer, name, probe)
        self._conns.add(conn)
        log.debug("OVSDB %s: connected", name)
        try:
            await conn.run()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("OVSDB %s: connection failed", name)
        finally:
            self._conns.discard(conn)
            self._tasks.discard(task)
            conn.session.close()
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 5)

    async def close(self) -> None:
        for srv in self._servers:
            srv.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for srv in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(srv.wait_closed(), 5)
        self._servers.clear()
        self.service.close()
        if self._inode is not None and self.unix_path is not None:
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(self.unix_path)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self.unix_path)
            self._inode = None


async def start_for_switch(switch: Any, rundir: str, tcp_port: int | None = None) -> OvsdbServer:
    """Serve ``switch``'s database on RUNDIR/db.sock (and 127.0.0.1:tcp_port):
    a client's transaction is answered once the switch has applied it."""
    service = Service(switch.db, after_commit=switch.settle)
    server = OvsdbServer(service, os.path.join(rundir, DB_SOCKET_NAME),
                         ("127.0.0.1", tcp_port) if tcp_port is not None else None)
    await server.start()
    return server
