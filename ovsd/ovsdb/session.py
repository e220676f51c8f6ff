"""One OVSDB client connection, without I/O: JSON values in, messages out.

:meth:`Session.receive` takes each JSON value read from the client; every
message the session sends (replies, update notifications, "locked" and
"stolen", echo replies) goes through the ``send`` callable, in order.
Whatever a client sends, the answer is a reply, an error object or, for a
message that is not JSON-RPC at all, :class:`~ovsd.ovsdb.jsonrpc.BadMessage`
for the I/O layer to close the connection over; an unexpected failure in a
method is logged and answered with an "internal error", never raised.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Callable

from ovsd.db.store import Changes
from ovsd.ovsdb import jsonrpc
from ovsd.ovsdb.catalog import Served
from ovsd.ovsdb.datum import ID_RE
from ovsd.ovsdb.errors import (CANCELED, UNKNOWN_DATABASE, OvsdbError, _show, syntax)
from ovsd.ovsdb.monitor import Monitor
from ovsd.ovsdb.service import Service
from ovsd.ovsdb.transact import Blocked, execute

log = logging.getLogger(__name__)

ECHO_ID = "echo"


def _key(j: Any) -> str:
    return json.dumps(j, sort_keys=True, separators=(",", ":"))


class Session:
    def __init__(self, service: Service, send: Callable[[dict], None], name: str):
        self.service = service
        self.send = send
        self.name = name
        self.monitors: dict[str, Monitor] = {}
        self._blocked: dict[str, asyncio.Task] = {}
        self.closed = False
        service.sessions.add(self)

    def __hash__(self) -> int:
        return id(self)

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        """The connection is gone: drop monitors, pass locks on, cancel waits."""
        if self.closed:
            return
        self.closed = True
        self.service.sessions.discard(self)
        self.monitors.clear()
        for task in self._blocked.values():
            task.cancel()
        self._blocked.clear()
        for name, owner in self.service.locks.release_all(self):
            owner.send(jsonrpc.notify("locked", [name]))

    def on_commit(self, served: Served, changes: Changes) -> None:
        for mon in list(self.monitors.values()):
            if mon.served is not served:
                continue
            updates = mon.updates(changes)
            if not updates:
                continue
            if mon.version == 1:
                self.send(jsonrpc.notify("update", [mon.id, updates]))
            elif mon.version == 2:
                self.send(jsonrpc.notify("update2", [mon.id, updates]))
            else:
                self.send(jsonrpc.notify("update3", [mon.id, self.service.last_txn_id,
                                                     updates]))

    # -- messages ---------------------------------------------------------------------

    async def receive(self, j: Any) -> None:
        """Handle one JSON value; BadMessage if it is not a JSON-RPC message
        (after answering it when it carried an id)."""
        try:
            msg = jsonrpc.parse_message(j)
        except jsonrpc.BadMessage as e:
            if e.id is not None:
                self.send(jsonrpc.error(e.id, syntax(str(e)).to_json()))
            raise
        if msg.kind in ("reply", "error"):
            if msg.kind == "error":
                log.info("OVSDB %s: error reply to our request %s: %s", self.name,
                         _show(msg.id), _show(msg.error))
            return  # replies to our echo probes; the I/O layer counts them as activity
        if msg.kind == "notify":
            self._notification(msg)
            return
        try:
            result = await self._request(msg)
        except OvsdbError as e:
            self.send(jsonrpc.error(msg.id, e.to_json()))
        except _PlainError as e:
            self.send(jsonrpc.error(msg.id, e.args[0]))
        except Exception as e:
            log.exception("OVSDB %s: %s failed", self.name, msg.method)
            self.send(jsonrpc.error(msg.id, OvsdbError(
                "internal error", f"{type(e).__name__}: {e}").to_json()))
        else:
            if result is not _DEFERRED:
                self.send(jsonrpc.reply(msg.id, result))

    def _notification(self, msg: jsonrpc.Message) -> None:
        if msg.method == "cancel" and len(msg.params) == 1:
            task = self._blocked.pop(_key(msg.params[0]), None)
            if task is not None:
                task.cancel()
                self.send(jsonrpc.error(msg.params[0], OvsdbError(CANCELED).to_json()))
            return
        if msg.method == "echo":
            return
        log.debug("OVSDB %s: ignoring notification %r", self.name, msg.method)

    async def _request(self, msg: jsonrpc.Message) -> Any:
        method, params = msg.method, msg.params
        handler = _METHODS.get(method)
        if handler is None:
            raise _PlainError("unknown method")
        return await handler(self, params, msg.id)

    def _db(self, name: Any, method: str, params: list) -> Served:
        served = self.service.dbs.get(name) if isinstance(name, str) else None
        if served is None:
            raise OvsdbError(UNKNOWN_DATABASE, f"{method} request specifies unknown "
                             f"database {name}", _show(params))
        return served

    # -- methods ----------------------------------------------------------------------

    async def _echo(self, params, msg_id):
        return params

    async def _list_dbs(self, params, msg_id):
        return list(self.service.dbs)

    async def _get_schema(self, params, msg_id):
        if len(params) != 1:
            raise syntax("get_schema takes one database name", params)
        return self._db(params[0], "get_schema", params).schema_json()

    async def _get_server_id(self, params, msg_id):
        return self.service.server_id

    async def _set_db_change_aware(self, params, msg_id):
        # Schemas never change while ovsd runs, so there is nothing to announce.
        return {}

    async def _transact(self, params, msg_id):
        if not params:
            raise syntax("transact needs a database name", params)
        served = self._db(params[0], "transact", params)
        ops = params[1:]
        generation = served.db.generation
        seen = self.service.commits
        try:
            results = execute(served, ops, owns_lock=self._owns, can_block=True)
        except Blocked as b:
            key = _key(msg_id)
            if key in self._blocked:
                raise syntax("a transaction with this id is already waiting", msg_id)
            task = asyncio.get_running_loop().create_task(
                self._blocked_transact(served, ops, msg_id, key, b.timeout_ms, seen))
            self._blocked[key] = task
            return _DEFERRED
        if served.db.generation != generation and self.service.after_commit is not None:
            await self.service.after_commit()
        return results

    async def _blocked_transact(self, served: Served, ops: list, msg_id, key: str,
                                timeout_ms: float, seen: int) -> None:
        deadline = time.monotonic() + timeout_ms / 1000
        try:
            while True:
                left = deadline - time.monotonic()
                await self.service.next_commit(seen, max(left, 0))
                expired = time.monotonic() >= deadline
                generation = served.db.generation
                seen = self.service.commits
                try:
                    results = execute(served, ops, owns_lock=self._owns,
                                      can_block=not expired)
                except Blocked:
                    continue
                if served.db.generation != generation and self.service.after_commit:
                    await self.service.after_commit()
                if not self.closed:
                    self.send(jsonrpc.reply(msg_id, results))
                return
        except asyncio.CancelledError:
            pass
        except Exception as e:
            log.exception("OVSDB %s: waiting transaction failed", self.name)
            self.send(jsonrpc.error(msg_id, OvsdbError("internal error", str(e)).to_json()))
        finally:
            self._blocked.pop(key, None)

    def _owns(self, name: str) -> bool:
        return self.service.locks.owner(name) is self

    async def _monitor(self, params, msg_id, version: int = 1):
        method = {1: "monitor", 2: "monitor_cond", 3: "monitor_cond_since"}[version]
        want = 4 if version == 3 else 3
        if len(params) != want:
            raise syntax(f"{method} takes [db, monitor-id, requests"
                         f"{', last-txn-id' if version == 3 else ''}]", params)
        served = self._db(params[0], method, params)
        mon_id = params[1]
        key = _key(mon_id)
        if key in self.monitors:
            raise syntax("duplicate monitor ID", mon_id)
        mon = Monitor.parse(mon_id, served, params[2], version)
        initial_all = mon.initial()
        self.monitors[key] = mon
        if version < 3:
            return initial_all
        last = params[3]
        # _Server never changes while ovsd runs: one id for its whole life.
        current = (self.service.last_txn_id if served is self.service.main
                   else "00000000-0000-0000-0000-000000000000")
        found = isinstance(last, str) and last == current
        return [found, current, {} if found else initial_all]

    async def _monitor_cond(self, params, msg_id):
        return await self._monitor(params, msg_id, 2)

    async def _monitor_cond_since(self, params, msg_id):
        return await self._monitor(params, msg_id, 3)

    async def _monitor_cond_change(self, params, msg_id):
        if len(params) != 3:
            raise syntax("monitor_cond_change takes [monitor-id, new-monitor-id, "
                         "requests]", params)
        old, new, requests = params
        mon = self.monitors.get(_key(old))
        if mon is None:
            raise syntax("unknown monitor session", old)
        new_key = _key(new)
        if new_key != _key(old) and new_key in self.monitors:
            raise syntax("duplicate monitor ID", new)
        updates = mon.change_conditions(requests)
        del self.monitors[_key(old)]
        mon.id = new
        self.monitors[new_key] = mon
        if updates:
            if mon.version == 3:
                self.send(jsonrpc.notify("update3", [new, self.service.last_txn_id,
                                                     updates]))
            else:
                self.send(jsonrpc.notify("update2" if mon.version == 2 else "update",
                                         [new, updates]))
        return {}

    async def _monitor_cancel(self, params, msg_id):
        if len(params) != 1 or self.monitors.pop(_key(params[0]), None) is None:
            raise _PlainError("unknown monitor")
        return {}

    def _lock_name(self, params, method: str) -> str:
        if len(params) != 1 or not isinstance(params[0], str) or not ID_RE.match(params[0]):
            raise syntax(f"{method} request params must be <id>", params)
        return params[0]

    async def _lock(self, params, msg_id):
        name = self._lock_name(params, "lock")
        if self.service.locks.has(self, name):
            raise syntax("must issue \"unlock\" before new \"lock\"", params)
        return {"locked": self.service.locks.lock(self, name)}

    async def _steal(self, params, msg_id):
        name = self._lock_name(params, "steal")
        previous = self.service.locks.steal(self, name)
        if previous is not None and previous is not self:
            previous.send(jsonrpc.notify("stolen", [name]))
        return {"locked": True}

    async def _unlock(self, params, msg_id):
        name = self._lock_name(params, "unlock")
        if not self.service.locks.has(self, name):
            raise syntax("unlock: \"unlock\" without \"lock\" or \"steal\"", params)
        new = self.service.locks.unlock(self, name)
        if new is not None:
            new.send(jsonrpc.notify("locked", [name]))
        return {}


class _PlainError(Exception):
    """An error ovsdb-server reports as a bare string ("unknown method")."""


_DEFERRED = object()

_METHODS = {
    "echo": Session._echo,
    "list_dbs": Session._list_dbs,
    "get_schema": Session._get_schema,
    "get_server_id": Session._get_server_id,
    "set_db_change_aware": Session._set_db_change_aware,
    "transact": Session._transact,
    "monitor": Session._monitor,
    "monitor_cond": Session._monitor_cond,
    "monitor_cond_since": Session._monitor_cond_since,
    "monitor_cond_change": Session._monitor_cond_change,
    "monitor_cancel": Session._monitor_cancel,
    "lock": Session._lock,
    "steal": Session._steal,
    "unlock": Session._unlock,
}
