"""The databases served: Open_vSwitch (the switch's store) and _Server.

``_Server`` is the read-only database that ovsdb-server offers about itself
and that the OVS IDL reads before anything else: one row per database in its
``Database`` table (model, connected, leader, schema).  ovsd has no
clustering, so every database is "standalone", connected and leader, and the
cluster columns (cid, sid, index) stay empty.

Row versions (``_version``) are not kept by the store; the catalog gives each
row a fresh one whenever a commit changes it.
"""

from __future__ import annotations

import json
import uuid as uuidlib
from dataclasses import dataclass, field

from ovsd.db.schema import Schema
from ovsd.db.store import Changes, Database

SERVER_DB = "_Server"

_SERVER_SCHEMA = {
    "name": SERVER_DB,
    "version": "1.2.0",
    "tables": {
        "Database": {
            "columns": {
                "name": {"type": "string"},
                "model": {"type": {"key": {"type": "string",
                                           "enum": ["set", ["clustered", "relay",
                                                            "standalone"]]}}},
                "connected": {"type": "boolean"},
                "leader": {"type": "boolean"},
                "schema": {"type": {"key": "string", "min": 0}},
                "cid": {"type": {"key": "uuid", "min": 0}},
                "sid": {"type": {"key": "uuid", "min": 0}},
                "index": {"type": {"key": "integer", "min": 0}},
            },
        },
    },
}


@dataclass(eq=False)
class Served:
    """One database as OVSDB clients see it."""

    name: str
    db: Database
    read_only: bool = False
    versions: dict[tuple[str, uuidlib.UUID], uuidlib.UUID] = field(default_factory=dict)

    @property
    def schema(self) -> Schema:
        return self.db.schema

    def schema_json(self) -> dict:
        return self.db.schema.to_json()

    def version(self, table: str, uid: uuidlib.UUID) -> uuidlib.UUID:
        key = (table, uid)
        v = self.versions.get(key)
        if v is None:
            v = self.versions[key] = uuidlib.uuid4()
        return v

    def note(self, changes: Changes) -> None:
        for c in changes.rows:
            if c.new is None:
                self.versions.pop((c.table, c.uuid), None)
            else:
                self.versions[(c.table, c.uuid)] = uuidlib.uuid4()


def server_database(served: list[Served]) -> Served:
    """The _Server database describing ``served`` and itself."""
    db = Database(None, Schema.from_json(_SERVER_SCHEMA))
    me = Served(SERVER_DB, db, read_only=True)
    with db.transaction() as txn:
        for s in [*served, me]:
            txn.insert("Database", {
                "name": s.name, "model": "standalone", "connected": True, "leader": True,
                "schema": json.dumps(s.schema_json(), separators=(",", ":"))})
    return me
