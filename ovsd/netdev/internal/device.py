"""Port type ``internal``: a tap device, the bridge's own interface to the host
(OVS's LOCAL port on the userspace datapath).

Frames the switch sends on the port arrive in the host's network stack on the
tap interface; frames the host sends out of it enter the switch.  The control
process reads the tap when it is readable (``fileno``), so an idle port costs
nothing.  As in OVS, the interface is created administratively down: the host
brings it up (``ip link set br0 up``) when it wants to use it, and until then
frames sent to it are dropped and the kernel sends nothing into the switch.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

from ovsd.dpif import drops as D
from ovsd.netdev.base import Netdev, NetdevError

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFNAMSIZ = 16
MAX_FRAME = 65535


class InternalNetdev(Netdev):
    type = "internal"
    pmd_polled = False

    def __init__(self, name: str, options: dict[str, str]):
        super().__init__(name, options)
        if len(name.encode()) >= IFNAMSIZ:
            raise NetdevError(f"internal port {name}: a kernel interface name has at most "
                              f"{IFNAMSIZ - 1} characters")
        try:
            self._fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise NetdevError(f"internal port {name}: cannot open /dev/net/tun "
                              f"({e.strerror}); internal ports need the tun driver and "
                              "CAP_NET_ADMIN") from None
        try:
            fcntl.ioctl(self._fd, TUNSETIFF,
                        struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI))
        except OSError as e:
            os.close(self._fd)
            hint = (" (an interface of that name already exists and is not a tap)"
                    if e.errno in (errno.EBUSY, errno.EINVAL, errno.EEXIST) else "")
            raise NetdevError(f"internal port {name}: cannot create tap device: "
                              f"{e.strerror}{hint}") from None

    def fileno(self) -> int:
        return self._fd

    def rx_burst(self, qid: int, max_frames: int = 32) -> list:
        frames = []
        for _ in range(max_frames):
            try:
                frame = os.read(self._fd, MAX_FRAME)
            except BlockingIOError:
                break
            except OSError:
                self.stats.rx_errors += 1
                break
            if len(frame) < 14:
                self.stats.rx_errors += 1
                continue
            frames.append(frame)
        if frames:
            self.stats.rx_packets += len(frames)
            self.stats.rx_bytes += sum(map(len, frames))
        return frames

    def tx_burst(self, qid: int, frames: list) -> int:
        # Frames not sent are counted as tx_dropped by the datapath.
        sent = 0
        for frame in frames:
            try:
                os.write(self._fd, frame)
            except OSError as e:
                # Full, or EIO while the host has the interface down: the
                # frame is lost, as on a wire nobody listens to.
                self.tx_drop_reason = (D.TX_QUEUE_FULL if e.errno == errno.EAGAIN
                                       else D.OUTPUT_PORT_DOWN)
                continue
            sent += 1
            self.stats.tx_bytes += len(frame)
        self.stats.tx_packets += sent
        return sent

    def status(self) -> dict[str, str]:
        return {"driver_name": "tun"}

    @property
    def mac(self) -> bytes | None:
        try:
            with open(f"/sys/class/net/{self.name}/address") as f:
                return bytes.fromhex(f.read().strip().replace(":", ""))
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # a non-persistent tap disappears with its last fd
            self._fd = -1
