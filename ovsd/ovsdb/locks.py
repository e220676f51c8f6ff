"""OVSDB locks (RFC 7047 sections 4.1.8-4.1.10): named, owned by one session
at a time; the others wait in line and get a "locked" notification when the
lock comes to them.  "steal" takes the lock at once and tells the previous
owner with "stolen"; the previous owner stays in line."""

from __future__ import annotations

from typing import Any, Hashable


class Locks:
    def __init__(self) -> None:
        self._queues: dict[str, list[Hashable]] = {}

    def owner(self, name: str) -> Any:
        q = self._queues.get(name)
        return q[0] if q else None

    def has(self, session: Hashable, name: str) -> bool:
        return session in self._queues.get(name, ())

    def lock(self, session: Hashable, name: str) -> bool:
        """Join the line for ``name``; whether ``session`` owns it now."""
        q = self._queues.setdefault(name, [])
        q.append(session)
        return q[0] is session

    def steal(self, session: Hashable, name: str) -> Any:
        """Take ``name``; returns the session it was taken from, or None."""
        q = self._queues.setdefault(name, [])
        if session in q:
            q.remove(session)
        previous = q[0] if q else None
        q.insert(0, session)
        return previous

    def unlock(self, session: Hashable, name: str) -> Any:
        """Leave the line for ``name``; returns the session that now owns it
        because of that, or None."""
        q = self._queues.get(name, [])
        was_owner = bool(q) and q[0] is session
        if session in q:
            q.remove(session)
        if not q:
            self._queues.pop(name, None)
            return None
        return q[0] if was_owner else None

    def release_all(self, session: Hashable) -> list[tuple[str, Any]]:
        """Drop every lock of ``session``; (name, new owner) for each lock that
        passes to someone."""
        out = []
        for name in [n for n, q in self._queues.items() if session in q]:
            new = self.unlock(session, name)
            if new is not None:
                out.append((name, new))
        return out
