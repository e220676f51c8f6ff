"""OVSDB (RFC 7047) served over the configuration database.

Real OVS clients (``ovs-vsctl --db=unix:RUNDIR/db.sock``, the OVS Python
IDL, ovsdbapp) read and change the same :class:`ovsd.db.store.Database` that
ofctl's JSON-RPC changes, so there is one state whichever way it is changed.

The protocol is sans-I/O (:mod:`.jsonrpc` frames bytes, :mod:`.session`
turns messages into replies and notifications); :mod:`.server` puts it on
sockets.
"""
