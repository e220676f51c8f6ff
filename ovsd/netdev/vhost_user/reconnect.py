"""When to try connecting again: a small state machine, apart from the socket.

A ``dpdkvhostuserclient`` port connects to a socket somebody else listens on
(QEMU, testpmd).  While nobody listens, attempts back off exponentially from
``min_backoff`` to ``max_backoff``; once a connection was made, losing it
starts again from the minimum, so a restarted frontend is found quickly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Backoff:
    min_backoff: float = 0.05
    max_backoff: float = 1.0
    delay: float = 0.0  # before the next attempt
    attempts: int = 0  # since the last success
    connections: int = 0  # successful connects, ever

    def failed(self) -> float:
        """An attempt failed: seconds to wait before the next one."""
        self.attempts += 1
        self.delay = self.min_backoff if self.delay == 0 else \
            min(self.delay * 2, self.max_backoff)
        return self.delay

    def connected(self) -> None:
        self.attempts = 0
        self.delay = 0.0
        self.connections += 1

    def disconnected(self) -> float:
        """The connection went away: seconds to wait before reconnecting."""
        self.delay = 0.0
        return self.failed()
