"""vhost-user ports, control-process side: the socket, the handshake, the state.

``dpdkvhostuser``: ovsd listens on ``RUNDIR/<port name>`` and the frontend
(QEMU, virtio_user) connects.  ``dpdkvhostuserclient``: ovsd connects to
``options:vhost-server-path`` and keeps reconnecting (reconnect.Backoff)
whenever the frontend is not there.

The protocol itself is protocol.Session; this module reads and writes the
socket and, when a message changes what the datapath may touch, waits for
every PMD to take the new state (``hooks.sync``) before it answers.  The PMDs
get the port's state from ``vhost_info()``: memory regions and eventfds as fds,
rings as addresses.  Packets never pass through here, except frames the
control process itself sends to the port (``tx_burst``), which go to a PMD.
"""

from __future__ import annotations

import array
import asyncio
import grp
import logging
import mmap
import os
import pwd
import socket
import stat
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from ovsd.dpif import drops as D
from ovsd.netdev.base import Netdev, NetdevError, NetdevStats
from ovsd.netdev.vhost_user.protocol import (FEATURE_NAMES, PROTOCOL_NAMES, Decoder, F,
                                             Message, ProtocolError, Session, feature_names,
                                             req_name)
from ovsd.netdev.vhost_user.reconnect import Backoff
from ovsd.netdev.vhost_user.vring import RingCounters

log = logging.getLogger("ovsd.vhost")

MAX_QUEUE_PAIRS = 16
MAX_FDS = 16  # any one vhost-user message carries at most 8 (SET_MEM_TABLE)
SUN_PATH_MAX = 107

#: options:tx-retries-max: OVS's range and default.
TX_RETRIES_MAX = 32
TX_RETRIES_DEFAULT = 8

#: Where dpdkvhostuser sockets are created; the switch sets it to its rundir.
SOCKET_DIR = "/run/ovsd"


@dataclass
class Hooks:
    """What the device needs from the switch once it is running."""
    sync: Callable[[], Awaitable[None]]  # every PMD applied vhost_info()
    tx: Callable[[list], None]  # frames the control process sends to the port


@dataclass
class VhostStats(NetdevStats):
    """A vhost port's counters, with two of OVS's own for vhost ports:
    ``ovs_tx_retries``, how many times a transmit burst was tried again after
    the guest's ring took only part, and ``ovs_tx_failure_drops``, the frames
    its ring had no room for after the retries (part of tx_dropped)."""
    ovs_tx_retries: int = 0
    ovs_tx_failure_drops: int = 0

    def add_counts(self, rx_packets: int, rx_bytes: int, tx_packets: int, tx_bytes: int,
                   tx_dropped: int, rx_dropped: int = 0, tx_retries: int = 0,
                   tx_failures: int = 0) -> None:
        super().add_counts(rx_packets, rx_bytes, tx_packets, tx_bytes, tx_dropped, rx_dropped)
        self.ovs_tx_retries += tx_retries
        self.ovs_tx_failure_drops += tx_failures


class VhostUserNetdev(Netdev):
    pmd_polled = True
    pmd_counted = True
    # Only PMDs write the rings: the control process falls short only when the
    # port cannot take frames at all.
    tx_drop_reason = D.OUTPUT_PORT_DOWN

    def __init__(self, name: str, options: dict[str, str], *, client: bool):
        super().__init__(name, options)
        self.type = "dpdkvhostuserclient" if client else "dpdkvhostuser"
        self.client = client
        self.stats = VhostStats()
        # Options first: a port refused for them has nothing to release.
        self.path = self._socket_path(options)
        self._mode, self._owner = _socket_perms(options)
        self.tx_retries_max = _tx_retries_max(options)
        self._counters_fd = os.memfd_create(f"ovsd-vhost-{name}", os.MFD_CLOEXEC)
        os.ftruncate(self._counters_fd, mmap.PAGESIZE)
        self._counters_mm = mmap.mmap(self._counters_fd, mmap.PAGESIZE)
        self.session = Session(RingCounters(self._counters_mm),
                               max_queue_pairs=MAX_QUEUE_PAIRS)
        self.epoch = 0
        self.hooks: Hooks | None = None
        self.backoff = Backoff()
        self.last_error: str | None = None
        self.last_error_time: float | None = None
        self.connected_since: float | None = None
        # (errno, time) of the newest failed connect: port_status tells a
        # missing socket from a refused or forbidden one by it.
        self.connect_error: tuple[int, float] | None = None
        self._sock: socket.socket | None = None
        self._listener: socket.socket | None = None
        self._waiting: socket.socket | None = None  # accepted while the last one ends
        self._decoder = Decoder()
        self._inbox: asyncio.Queue | None = None
        self._tasks: list[asyncio.Task] = []
        self._closed = False
        self._reset_reason = ""
        if not client:
            try:
                self._listen()
            except BaseException:
                self._release_counters()   # a port that failed to open keeps no fd
                raise

    # -- configuration ------------------------------------------------------------------

    def _socket_path(self, options: dict[str, str]) -> str:
        if self.client:
            path = options.get("vhost-server-path")
            if not path:
                raise NetdevError("a dpdkvhostuserclient port needs "
                                  "options:vhost-server-path=PATH (the socket QEMU or the "
                                  "DPDK application listens on)")
        else:
            if "vhost-server-path" in options:
                raise NetdevError("options:vhost-server-path is for dpdkvhostuserclient "
                                  f"ports; a dpdkvhostuser port listens on "
                                  f"{SOCKET_DIR}/{self.name}")
            if "/" in self.name:
                raise NetdevError(f"port name {self.name!r} cannot name a socket file")
            path = os.path.join(SOCKET_DIR, self.name)
        if len(path.encode()) > SUN_PATH_MAX:
            raise NetdevError(f"socket path {path} is {len(path.encode())} bytes; unix "
                              f"sockets allow at most {SUN_PATH_MAX}")
        return path

    def reconfigure(self, options: dict[str, str]) -> None:
        path = self._socket_path(options)
        mode, owner = _socket_perms(options)
        retries = _tx_retries_max(options)
        if retries != self.tx_retries_max:
            self.tx_retries_max = retries
            self.epoch += 1   # the PMDs take it with the port's next state
        if path != self.path:
            # Another socket: start over with it (OVS re-creates the port too).
            self._disconnect_now("the socket path changed")
            self._close_listener()
            self.path = path
            self._mode, self._owner = mode, owner
            if not self.client:
                self._listen()
            self._start_io()
        elif (mode, owner) != (self._mode, self._owner):
            self._mode, self._owner = mode, owner
            if self._listener is not None:
                self._apply_perms()
        self.options = dict(options)

    # -- the listening socket (dpdkvhostuser) ------------------------------------------

    def _listen(self) -> None:
        path = self.path
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(st.st_mode):
                raise NetdevError(f"{path} exists and is not a socket; remove it or "
                                  "rename the port")
            if _someone_listens(path):
                raise NetdevError(f"another process listens on {path}; stop it or "
                                  "rename the port")
            os.unlink(path)  # left behind by an ovsd that died
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(path)
            s.listen(4)
        except OSError as e:
            s.close()
            raise NetdevError(f"cannot listen on {path}: {e.strerror}") from None
        s.setblocking(False)
        self._listener = s
        try:
            self._apply_perms()
        except NetdevError:
            self._close_listener()
            raise

    def _apply_perms(self) -> None:
        try:
            os.chmod(self.path, self._mode)
            if self._owner is not None:
                os.chown(self.path, *self._owner)
        except OSError as e:
            raise NetdevError(f"cannot set the owner or mode of {self.path}: "
                              f"{e.strerror}") from None

    def _close_listener(self) -> None:
        if self._listener is None:
            return
        self._unwatch(self._listener)
        self._listener.close()
        self._listener = None
        try:
            os.unlink(self.path)
        except OSError:
            pass

    # -- running ------------------------------------------------------------------------

    def attach(self, hooks: Hooks) -> None:
        """Start serving the socket (needs the running event loop)."""
        if self.hooks is not None:
            return
        self.hooks = hooks
        self._start_io()

    def _start_io(self) -> None:
        if self.hooks is None or self._closed:
            return
        loop = asyncio.get_running_loop()
        if self._listener is not None:
            loop.add_reader(self._listener.fileno(), self._on_accept)
        elif self.client and self._sock is None:
            self._spawn(self._connect_loop())

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        if task in self._tasks:
            self._tasks.remove(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("port %s: vhost-user task failed", self.name,
                      exc_info=task.exception())

    async def _connect_loop(self) -> None:
        while not self._closed and self._sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(self.path)
            except OSError as e:
                s.close()
                self.connect_error = (e.errno, time.time())
                delay = self.backoff.failed()
                if self.backoff.attempts == 1:
                    log.info("port %s: cannot connect to %s (%s); retrying", self.name,
                             self.path, e.strerror)
                    self._note_error(f"cannot connect to {self.path}: {e.strerror}")
                await asyncio.sleep(delay)
                continue
            self.backoff.connected()
            self.connect_error = None
            self._start_conn(s)

    def _on_accept(self) -> None:
        try:
            s, _ = self._listener.accept()
        except (BlockingIOError, OSError):
            return
        s.setblocking(False)
        if self._sock is None:
            self._start_conn(s)
        elif self._waiting is None:
            # Most likely the frontend reconnecting before we read the old
            # connection's end: it gets its turn once the old one is gone.
            self._waiting = s
        else:
            log.warning("port %s: refused another connection on %s (one frontend per "
                        "port)", self.name, self.path)
            s.close()

    def _start_conn(self, s: socket.socket) -> None:
        self._sock = s
        self.connected_since = time.time()
        self._decoder = Decoder()
        self._inbox = asyncio.Queue()
        log.info("port %s: vhost-user frontend connected on %s", self.name, self.path)
        asyncio.get_running_loop().add_reader(s.fileno(), self._on_readable, s)
        self._spawn(self._serve(s, self._inbox))

    def _on_readable(self, s: socket.socket) -> None:
        inbox = self._inbox
        try:
            data, anc, _flags, _ = s.recvmsg(65536, socket.CMSG_SPACE(MAX_FDS * 4))
        except BlockingIOError:
            return
        except OSError as e:
            self._unwatch(s)
            inbox.put_nowait(ProtocolError(f"reading the socket failed: {e.strerror}"))
            return
        fds = _fds_of(anc)
        if not data:
            for fd in fds:
                os.close(fd)
            self._unwatch(s)
            inbox.put_nowait(None)
            return
        try:
            for msg in self._decoder.feed(data, fds):
                inbox.put_nowait(msg)
        except ProtocolError as e:
            self._unwatch(s)
            inbox.put_nowait(e)

    async def _serve(self, s: socket.socket, inbox: asyncio.Queue) -> None:
        reason, error = None, False
        last: int | None = None   # the last request handled
        while reason is None:
            item = await inbox.get()
            if item is None:
                reason = "the frontend closed the connection"
                if self._decoder.partial:
                    reason += " in the middle of a message"
                    error = True
                elif self.state != "ready":
                    reason += (" before sending any request" if last is None else
                               f" with no queue pair ready (its last request: "
                               f"{req_name(last)})")
                break
            if isinstance(item, ProtocolError):
                reason, error = str(item), True
                break
            if item == "reset":
                reason, error = self._reset_reason, True
                break
            msg: Message = item
            last = msg.request
            try:
                step = self.session.handle(msg)
            except ProtocolError as e:
                reason, error = str(e), True
                break
            for note in self.session.notes:
                log.warning("port %s: %s", self.name, note)
            self.session.notes.clear()
            if step.sync:
                self.epoch += 1
                await self._sync()
            out = step.reply if step.finish is None else step.finish()
            if step.sync:
                self.session.release_retired()
            if out is not None:
                try:
                    s.sendall(out)
                except OSError as e:
                    reason = f"answering {req_name(msg.request)} failed: {e.strerror}"
                    error = True
        await self._drop_connection(s, reason, error)

    async def _sync(self) -> None:
        if self.hooks is not None:
            await self.hooks.sync()

    async def _drop_connection(self, s: socket.socket, reason: str, error: bool) -> None:
        self._unwatch(s)
        s.close()
        if self._sock is s:
            self._sock = None
        self._decoder.close()
        if error:
            log.warning("port %s: vhost-user connection reset: %s; waiting for the "
                        "frontend to connect again", self.name, reason)
            self._note_error(reason)
        else:
            log.info("port %s: %s", self.name, reason)
        self.connected_since = None
        self.session.reset()
        self.epoch += 1
        await self._sync()
        self.session.release_retired()
        if self._waiting is not None and not self._closed:
            waiting, self._waiting = self._waiting, None
            self._start_conn(waiting)
        elif self.client and not self._closed:
            await asyncio.sleep(self.backoff.disconnected())
            self._spawn(self._connect_loop())

    def guest_error(self, reason: str) -> None:
        """A PMD found the guest breaking the ring protocol: reset the connection."""
        log.warning("port %s: %s", self.name, reason)
        if self._inbox is not None and self._sock is not None:
            self._reset_reason = reason
            self._inbox.put_nowait("reset")
        else:
            self._note_error(reason)

    def _note_error(self, reason: str) -> None:
        self.last_error = reason
        self.last_error_time = time.time()

    def _disconnect_now(self, reason: str) -> None:
        if self._sock is not None and self._inbox is not None:
            self._reset_reason = reason
            self._inbox.put_nowait("reset")

    def _unwatch(self, s: socket.socket) -> None:
        try:
            asyncio.get_running_loop().remove_reader(s.fileno())
        except (RuntimeError, ValueError):
            pass

    # -- what the PMDs get --------------------------------------------------------------

    def vhost_info(self) -> tuple[dict, list[int]]:
        """This port's datapath state for a PMD, and the fds it refers to by
        index: [counters, memory regions..., call eventfds...]."""
        s = self.session
        fds = [self._counters_fd]
        regions, rings = [], []
        if s.memory is not None:
            for r, fd in zip(s.memory.regions, s.memory_fds):
                regions.append([r.gpa, r.size, r.uva, r.mmap_offset])
                fds.append(fd)
            for index in sorted(s.vrings):
                if not s.ready(index):
                    continue
                v = s.vrings[index]
                call = -1
                if v.call_fd is not None:
                    call = len(fds)
                    fds.append(v.call_fd)
                rings.append([index, v.num, v.desc, v.avail, v.used, call])
        return {"epoch": self.epoch, "mem_gen": s.mem_gen, "hdr_len": s.hdr_len,
                "mergeable": s.has(F.NET_MRG_RXBUF), "event_idx": s.has(F.RING_EVENT_IDX),
                "indirect": s.has(F.RING_INDIRECT_DESC), "regions": regions,
                "rings": rings, "tx_retries_max": self.tx_retries_max}, fds

    # -- Netdev -----------------------------------------------------------------------------

    @property
    def n_rxq(self) -> int:
        return max(1, self.session.n_queue_pairs)

    rxq_epoch = 0  # ring positions live in the shared counters, never lost

    def rxq_fds(self) -> list[None]:
        return [None] * self.n_rxq

    def detach_rxq(self, qid: int) -> dict:
        return {}

    def rx_burst(self, qid: int, max_frames: int = 32) -> list:
        return []  # PMDs poll the rings

    def tx_burst(self, qid: int, frames: list) -> int:
        if self.hooks is None or not self.link_up:
            return 0  # the datapath counts them as dropped
        self.hooks.tx(list(frames))
        return len(frames)

    def queue_states(self) -> list[tuple[int, str]]:
        return [(i, self.session.ring_state(i).value) for i in sorted(self.session.vrings)]

    @property
    def state(self) -> str:
        if self._sock is None:
            return "waiting"
        s = self.session
        pairs = range(s.n_queue_pairs)
        if any(s.ready(2 * q) and s.ready(2 * q + 1) for q in pairs):
            return "ready"
        return "connected"

    @property
    def link_up(self) -> bool:
        return self.state == "ready"

    def status(self) -> dict[str, str]:
        s = self.session
        out = {"mode": "client" if self.client else "server", "socket": self.path,
               "status": self.state, "num_of_vrings": str(len(s.vrings))}
        if s.features_set:
            out["features"] = f"0x{s.features:016x}"
        for index, state in self.queue_states():
            out[f"vring_{index}"] = state
            v = s.vrings[index]
            if v.num:
                out[f"vring_{index}_size"] = str(v.num)
        if self.last_error:
            out["last_error"] = self.last_error
        return out

    def details(self) -> dict:
        """Everything `ofctl vhost-show` prints."""
        s = self.session
        queues = []
        for index in sorted(s.vrings):
            v = s.vrings[index]
            last_avail, used = s.counters.get(index)
            queues.append({"ring": index, "queue_pair": index // 2,
                           "direction": "guest tx (ovsd rx)" if index % 2
                           else "guest rx (ovsd tx)",
                           "size": v.num, "enabled": v.enabled,
                           "state": s.ring_state(index).value,
                           "last_avail_idx": last_avail, "used_idx": used,
                           "notify": "eventfd" if v.call_fd is not None else "polling"})
        return {"name": self.name, "type": self.type,
                "mode": "client" if self.client else "server", "socket": self.path,
                "state": self.state,
                "connected_since": self.connected_since,
                "connections": self.backoff.connections if self.client else None,
                "features": s.features if s.features_set else None,
                "feature_names": feature_names(s.features, FEATURE_NAMES)
                if s.features_set else [],
                "protocol_features": s.protocol,
                "protocol_feature_names": feature_names(s.protocol, PROTOCOL_NAMES),
                "offered_features": s.offered,
                "hdr_len": s.hdr_len if s.features_set else None,
                "memory_regions": [{"gpa": r.gpa, "size": r.size, "uva": r.uva,
                                    "mmap_offset": r.mmap_offset}
                                   for r in (s.memory.regions if s.memory else ())],
                "queues": queues, "tx_retries_max": self.tx_retries_max,
                "last_error": self.last_error, "last_error_time": self.last_error_time,
                "stats": self.stats.as_dict()}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for s in (self._sock, self._waiting):
            if s is not None:
                self._unwatch(s)
                s.close()
        self._sock = self._waiting = None
        self._decoder.close()
        # The PMDs dropped this port before the switch closes it.
        self.session.reset()
        self.session.release_retired()
        self._close_listener()
        self._release_counters()

    def _release_counters(self) -> None:
        self.session.counters.release()
        self._counters_mm.close()
        os.close(self._counters_fd)


def _tx_retries_max(options: dict[str, str]) -> int:
    text = options.get("tx-retries-max")
    if text is None:
        return TX_RETRIES_DEFAULT
    try:
        value = int(text)
        if not 0 <= value <= TX_RETRIES_MAX:
            raise ValueError
    except ValueError:
        raise NetdevError(f"options:tx-retries-max={text!r}: expected an integer from 0 to "
                          f"{TX_RETRIES_MAX} (how many times a burst the guest's ring "
                          f"could not take whole is tried again; default "
                          f"{TX_RETRIES_DEFAULT})") from None
    return value


def _socket_perms(options: dict[str, str]) -> tuple[int, tuple[int, int] | None]:
    text = options.get("vhost-sock-mode", "0660")
    try:
        mode = int(text, 8)
        if not 0 <= mode <= 0o777:
            raise ValueError
    except ValueError:
        raise NetdevError(f"options:vhost-sock-mode={text!r}: expected an octal file "
                          "mode such as 0660") from None
    owner = options.get("vhost-sock-owner")
    if not owner:
        return mode, None
    user, _, group = owner.partition(":")
    try:
        pw = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
        uid, gid = pw.pw_uid, pw.pw_gid
        if group:
            gid = grp.getgrnam(group).gr_gid if not group.isdigit() else int(group)
    except KeyError:
        raise NetdevError(f"options:vhost-sock-owner={owner!r}: no such user or group "
                          "(expected USER[:GROUP])") from None
    return mode, (uid, gid)


def _someone_listens(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _fds_of(anc) -> list[int]:
    fds: list[int] = []
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(payload[:len(payload) - len(payload) % arr.itemsize])
            fds.extend(arr)
    return fds
