"""What all OVSDB sessions share: the databases served, the sessions and their
monitors, locks, the server's id and the id of the last commit
(monitor_cond_since's "last-txn-id").

The service listens to the store: after every commit, whoever made it (an
OVSDB client, ofctl, the switch writing back ``ofport`` or ``cur_cfg``), each
monitor gets its updates, in commit order.
"""

from __future__ import annotations

import asyncio
import logging
import uuid as uuidlib
from typing import TYPE_CHECKING, Awaitable, Callable

from ovsd.db.store import Changes, Database
from ovsd.ovsdb.catalog import Served, server_database
from ovsd.ovsdb.locks import Locks

if TYPE_CHECKING:
    from ovsd.ovsdb.session import Session

log = logging.getLogger(__name__)


class Service:
    def __init__(self, db: Database, *, name: str = "Open_vSwitch",
                 after_commit: Callable[[], Awaitable[None]] | None = None):
        main = Served(name, db)
        self.dbs: dict[str, Served] = {name: main}
        server = server_database([main])
        self.dbs[server.name] = server
        self.main = main
        self.server_id = str(uuidlib.uuid4())
        self.last_txn_id = str(uuidlib.uuid4())
        self.locks = Locks()
        self.sessions: set[Session] = set()
        # Awaited after a client's commit, before its reply: the switch uses
        # it to have every PMD forward by the new configuration first.
        self.after_commit = after_commit
        self._commit_waiters: set[asyncio.Future] = set()
        self.commits = 0  # counts commits, so a waiter misses none
        self._listener = self._on_commit
        db.add_listener(self._listener)

    def close(self) -> None:
        try:
            self.main.db.remove_listener(self._listener)
        except ValueError:
            pass
        for fut in self._commit_waiters:
            if not fut.done():
                fut.cancel()

    def _on_commit(self, changes: Changes) -> None:
        self.main.note(changes)
        self.commits += 1
        self.last_txn_id = str(uuidlib.uuid4())
        for session in list(self.sessions):
            try:
                session.on_commit(self.main, changes)
            except Exception:
                log.exception("OVSDB: sending updates to %s failed", session.name)
        for fut in list(self._commit_waiters):
            if not fut.done():
                fut.set_result(None)
        self._commit_waiters.clear()

    async def next_commit(self, since: int, timeout: float) -> None:
        """Return once a commit after the ``since``-th happened, or after
        ``timeout`` seconds."""
        if self.commits != since:
            return
        fut = asyncio.get_running_loop().create_future()
        self._commit_waiters.add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._commit_waiters.discard(fut)
