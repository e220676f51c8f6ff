"""Port type ``afxdp``: an existing interface read and written through AF_XDP
sockets, as OVS's netdev-afxdp does.

The control process sets the port up and answers for it:

- loads our XDP program (``bpf.XskProgram``: redirect each frame to the
  socket of its rx queue, pass the rest to the kernel stack), attaches it in
  the mode ``options:xdp-mode`` asks for, and creates one XDP socket per rx
  queue (UMEM in a memfd, bound to that queue, entered in the XSKMAP);
- a PMD that polls queue q gets that socket's fd and UMEM memfd
  (``rxq_handover``) and maps the rings itself; every ring index lives in the
  shared rings, so a queue moves between PMDs without losing its place;
- every PMD transmits on the socket of queue (its rank mod n_rxq)
  (``tx_handover``), under a lock only when PMDs outnumber queues;
- frames the control process itself sends (packet-out, flooding from the
  main thread) go to a PMD (``set_control_tx``): it has no ring of its own.

Options (Interface.options), validated when the port is opened or changed:
  n_rxq            rx queues (one XDP socket each), 1 to the interface's
                   queue count, default 1
  xdp-mode         best-effort (default: the best that works, tried in the
                   order below), native-with-zerocopy, native, generic
  use-need-wakeup  true (default) or false: with it, the kernel is woken
                   by a syscall only when it asks to be

The program is detached and the interface left as it was on del-port, on a
clean stop, and at the next start after a crash (``leftovers``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from ovsd.dpif import drops as D
from ovsd.netdev.afxdp import bpf, leftovers
from ovsd.netdev.afxdp.xsk import XskSocket
from ovsd.netdev.base import Netdev, NetdevError, NetdevStats
from ovsd.netdev.linux_iface import KernelIface

MAX_RXQ = 64
XDP_MODES = ("best-effort", "native-with-zerocopy", "native", "generic")
# (attach mode, zero-copy) for each xdp-mode, in the order tried.
_ATTEMPTS: dict[str, tuple[tuple[str, bool], ...]] = {
    "native-with-zerocopy": (("native", True),),
    "native": (("native", False),),
    "generic": (("generic", False),),
    "best-effort": (("native", True), ("native", False), ("generic", False)),
}
_BOOLS = {"true": True, "false": False}


def mode_name(attach_mode: str, zerocopy: bool) -> str:
    return "native-with-zerocopy" if zerocopy else attach_mode


@dataclass(frozen=True)
class AfxdpConfig:
    n_rxq: int
    xdp_mode: str
    need_wakeup: bool

    @classmethod
    def from_options(cls, options: dict[str, str]) -> "AfxdpConfig":
        raw = options.get("n_rxq")
        n_rxq = 1
        if raw not in (None, ""):
            try:
                n_rxq = int(str(raw), 0)
            except ValueError:
                n_rxq = 0
            if not 1 <= n_rxq <= MAX_RXQ:
                raise NetdevError(f"options:n_rxq={raw!r}: expected an integer from 1 to "
                                  f"{MAX_RXQ}")
        mode = options.get("xdp-mode") or "best-effort"
        if mode not in XDP_MODES:
            raise NetdevError(f"options:xdp-mode={mode!r}: expected one of "
                              f"{', '.join(XDP_MODES)}")
        wake = str(options.get("use-need-wakeup") or "true").lower()
        if wake not in _BOOLS:
            raise NetdevError(f"options:use-need-wakeup={options['use-need-wakeup']!r}: "
                              "expected true or false")
        return cls(n_rxq, mode, _BOOLS[wake])


def tx_queue_for(rank: int, n_pmds: int, n_queues: int) -> tuple[int, bool]:
    """The socket (queue) the PMD of rank ``rank`` transmits on, and whether
    another PMD transmits on it too (then both lock around each burst)."""
    qid = rank % n_queues
    return qid, sum(1 for r in range(n_pmds) if r % n_queues == qid) > 1


class AfxdpNetdev(KernelIface, Netdev):
    type = "afxdp"
    pmd_polled = True
    pmd_counted = True
    tx_drop_reason = D.OUTPUT_PORT_DOWN  # see tx_burst: only PMDs hold the rings

    def __init__(self, name: str, options: dict[str, str]):
        super().__init__(name, options)
        self._config = AfxdpConfig.from_options(options)
        self._find("afxdp")
        self._prog: bpf.XskProgram | None = None
        self._socks: list[XskSocket] = []
        self._attach_mode = ""
        self.zerocopy = False
        #: What better modes were tried and why they failed (best-effort).
        self.refused: list[tuple[str, str]] = []
        self._control_tx: Callable[[list], None] | None = None
        # Kernel drop counters of sockets already closed (reconfigure), so
        # the totals never go back.
        self._closed_counts = dict.fromkeys(("rx_dropped", "rx_errors", "tx_errors"), 0)
        self._seen = dict(self._closed_counts)
        #: Bumped whenever the sockets are replaced: PMDs must take them anew.
        self.rxq_epoch = 1
        self._open(self._config)

    # -- setting up ------------------------------------------------------------------

    def _fail(self, text: str) -> NetdevError:
        return NetdevError(f"afxdp port {self.name}: {text}")

    def _open(self, config: AfxdpConfig) -> None:
        have = self._rx_queues()
        if config.n_rxq > have:
            raise self._fail(
                f"options:n_rxq={config.n_rxq}, but {self.name} has {have} rx "
                f"queue{'s' if have != 1 else ''}; use n_rxq={have} or fewer (a veth gets "
                "more with `ip link add ... numrxqueues N numtxqueues N`)")
        leftovers.remove(self.ifindex)
        try:
            present = bpf.attached(self.ifindex)
        except OSError as e:
            raise self._fail(f"cannot read the XDP state of {self.name}: {e}") from None
        if present:
            mode, prog_id = present[0]
            raise self._fail(
                f"an XDP program (id {prog_id}, {mode} mode) is already attached to "
                f"{self.name} by someone else; ovsd does not replace it: detach it with "
                f"`ip link set dev {self.name} xdp off` (xdpgeneric off for generic mode) "
                "and add the port again")
        try:
            prog = bpf.XskProgram.load(config.n_rxq)
        except OSError as e:
            raise self._fail(f"cannot load the XDP program: {e}") from None
        refused: list[tuple[str, str]] = []
        for attach_mode, zerocopy in _ATTEMPTS[config.xdp_mode]:
            label = mode_name(attach_mode, zerocopy)
            try:
                bpf.attach(self.ifindex, prog.prog_fd, attach_mode)
            except OSError as e:
                refused.append((label, str(e)))
                continue
            try:
                socks = self._open_sockets(prog, config, zerocopy)
            except OSError as e:
                refused.append((label, str(e)))
                self._detach(prog, attach_mode)
                continue
            leftovers.record(self.ifindex, self.name, prog.prog_id, attach_mode)
            self._prog, self._socks = prog, socks
            self._attach_mode, self.zerocopy = attach_mode, zerocopy
            self.refused = refused
            return
        prog.close()
        why = "; ".join(f"{label}: {reason}" for label, reason in refused)
        hint = ("" if config.xdp_mode == "best-effort" else
                "; options:xdp-mode=best-effort takes the best mode that works")
        raise self._fail(f"xdp-mode={config.xdp_mode} cannot be used on {self.name} "
                         f"({why}){hint}")

    def _rx_queues(self) -> int:
        """The rx queues in use (real_num_rx_queues, what an XDP socket can bind
        to): sysfs has them; netlink only has how many were allocated (a veth
        allocates one per CPU and uses one), so it is the fallback for an
        interface that this process's sysfs does not show."""
        base = f"/sys/class/net/{self.name}"
        try:
            with open(f"{base}/ifindex") as f:
                if int(f.read()) == self.ifindex:
                    return sum(1 for e in os.listdir(f"{base}/queues") if e.startswith("rx-"))
        except (OSError, ValueError):
            pass
        try:
            return bpf.queue_counts(self.ifindex)[0]
        except OSError as e:
            raise self._fail(f"cannot read the queues of {self.name}: {e}") from None

    def _open_sockets(self, prog: bpf.XskProgram, config: AfxdpConfig,
                      zerocopy: bool) -> list[XskSocket]:
        socks: list[XskSocket] = []
        try:
            for qid in range(config.n_rxq):
                sock = XskSocket.create(self.ifindex, qid, zerocopy=zerocopy,
                                        need_wakeup=config.need_wakeup)
                socks.append(sock)
                prog.set_socket(qid, sock.fd)
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        return socks

    def _detach(self, prog: bpf.XskProgram, attach_mode: str) -> None:
        try:
            bpf.detach(self.ifindex, attach_mode, expected_prog_id=prog.prog_id)
        except OSError:
            pass  # the interface is gone, and the program with it

    def _teardown(self) -> None:
        """Detach the program first (no frame is redirected to a closing
        socket), then close the sockets and the program."""
        prog, socks = self._prog, self._socks
        self._prog, self._socks = None, []
        if prog is not None:
            self._detach(prog, self._attach_mode)
            leftovers.forget(self.ifindex)
        for sock in socks:
            for key, value in self._socket_counts(sock).items():
                self._closed_counts[key] += value
            sock.close()
        if prog is not None:
            prog.close()

    # -- handing queues to PMDs ------------------------------------------------------

    @property
    def n_rxq(self) -> int:
        return len(self._socks)

    @property
    def xdp_mode(self) -> str:
        """The mode in use (xdp-mode as OVS spells it), "" when not open."""
        return mode_name(self._attach_mode, self.zerocopy) if self._socks else ""

    def rxq_fds(self) -> list[None]:
        # No socket fd with a read position: rxq_handover gives the fds.
        return [None] * len(self._socks)

    def rxq_handover(self, qid: int) -> tuple[dict, list[int]]:
        """What the PMD polling queue ``qid`` maps: (message fields, fds)."""
        sock = self._socks[qid]
        return {"layout": sock.layout()}, [sock.fd, sock.umem_fd]

    def tx_info(self) -> dict:
        """Non-empty: PMDs transmit on this port themselves (tx_handover)."""
        return {"ifindex": self.ifindex, "epoch": self.rxq_epoch, "n_rxq": len(self._socks)}

    def tx_handover(self, rank: int, n_pmds: int) -> tuple[dict, list[int]]:
        """The socket the PMD of rank ``rank`` (of ``n_pmds``) transmits on, and
        whether it shares it (then it locks around each burst)."""
        if not self._socks:
            return {"qid": -1}, []
        qid, shared = tx_queue_for(rank, n_pmds, len(self._socks))
        sock = self._socks[qid]
        return {"qid": qid, "lock": shared, "layout": sock.layout()}, [sock.fd, sock.umem_fd]

    def set_control_tx(self, send: Callable[[list], None]) -> None:
        self._control_tx = send

    # -- bursts in the control process --------------------------------------------------

    def rx_burst(self, qid: int, max_frames: int = 32) -> list:
        return []  # only PMDs read the rings

    def tx_burst(self, qid: int, frames: list) -> int:
        if self._control_tx is None or not self._socks or not self.link_up:
            return 0  # the datapath counts them as dropped
        self._control_tx(list(frames))
        return len(frames)

    # -- configuration ------------------------------------------------------------------

    def reconfigure(self, options: dict[str, str]) -> None:
        config = AfxdpConfig.from_options(options)
        if config != self._config:
            # One program per interface: the old one must go before the new
            # one can be attached.  If the new setup fails, put the old back.
            old = self._config
            self._teardown()
            try:
                self._open(config)
            except NetdevError:
                try:
                    self._open(old)
                    self.rxq_epoch += 1
                except NetdevError:
                    pass
                raise
            self.rxq_epoch += 1
            self._config = config
        super().reconfigure(options)

    # -- facts --------------------------------------------------------------------------

    def status(self) -> dict[str, str]:
        out = dict(self._driver)
        out.update(self.link_status())
        out["n_rxq"] = str(len(self._socks))
        out["xdp-mode"] = self.xdp_mode
        out["xdp-mode-requested"] = self._config.xdp_mode
        out["use-need-wakeup"] = str(self._config.need_wakeup).lower()
        if self.refused:
            out["xdp-modes-refused"] = "; ".join(f"{m}: {why}" for m, why in self.refused)
        return out

    # -- counters -----------------------------------------------------------------------

    @staticmethod
    def _socket_counts(sock: XskSocket) -> dict[str, int]:
        try:
            s = sock.statistics()
        except OSError:
            return {}
        return {"rx_dropped": s.get("rx_dropped", 0) + s.get("rx_ring_full", 0),
                "rx_errors": s.get("rx_invalid_descs", 0),
                "tx_errors": s.get("tx_invalid_descs", 0)}

    def drop_counts(self) -> dict[str, int]:
        """Frames the kernel could not put on our rx rings (ring full, no
        free frame), by reason."""
        self.stats  # brings _seen up to date
        return {D.RX_RING_OVERRUN: self._seen["rx_dropped"]}

    @property
    def stats(self) -> NetdevStats:
        """PMDs' counts (added as they report) plus the kernel's drop counters of
        the sockets: frames the rings had no room for, bad descriptors."""
        st = self._stats
        totals = dict(self._closed_counts)
        for sock in self._socks:
            for key, value in self._socket_counts(sock).items():
                totals[key] += value
        for key, value in totals.items():
            setattr(st, key, getattr(st, key) + value - self._seen[key])
            self._seen[key] = value
        return st

    @stats.setter
    def stats(self, value: NetdevStats) -> None:
        self._stats = value

    def close(self) -> None:
        """Detach the program and close every socket (PMDs close their copies)."""
        self._teardown()
