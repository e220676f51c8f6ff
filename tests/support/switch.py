"""An in-memory switch for tests that call ovsd's RPC methods in-process."""

from __future__ import annotations

from ovsd.config import Config
from ovsd.db.store import Database
from ovsd.rpc import methods
from ovsd.switch import Switch


def dummy_switch(rundir, bridge: str = "br0") -> Switch:
    """``bridge`` without its internal port (no tap device), dummy ports p1 and
    p2 as OpenFlow ports 1 and 2, and the flow in_port=1,actions=output:2.
    Build it with an event loop running; ``await switch.close()`` at the end."""
    db = Database(None)
    switch = Switch(db, Config(rundir=str(rundir)))
    with db.transaction() as txn:
        br = txn.insert("Bridge", {"name": bridge, "datapath_type": "netdev"})
        txn.mutate_add("Open_vSwitch", txn.root_uuid, "bridges", [br])
    for n, name in enumerate(("p1", "p2"), 1):
        methods.add_port(switch, bridge, name, ["type=dummy", f"ofport_request={n}"])
    methods.add_flow(switch, bridge, "in_port=1,actions=output:2")
    return switch
