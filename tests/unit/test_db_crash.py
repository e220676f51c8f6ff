"""kill -9 at any moment leaves a database file that loads and holds a prefix of the commits."""

from __future__ import annotations

import os
import random
import select
import signal
import time

from ovsd.db.store import Database

KILLS = 32


def _state_of(db: Database) -> int:
    """How many operations the database holds (see _writer)."""
    commits = int(db.root["external_ids"].get("counter", "0"))
    aux = db.get_aux("counter", 0)
    assert commits in (aux, aux + 1), (commits, aux)
    # The bridges are exactly those commit number `commits` made.
    expected = {f"br{commits}-{k}" for k in range(3)} if commits else set()
    assert {row["name"] for row in db.rows("Bridge").values()} == expected
    assert len(db.rows("Port")) == len(db.rows("Interface")) == (12 if commits else 0)
    return commits + aux


def _writer(path: str, progress_fd: int) -> None:
    """Alternate table commits and aux writes forever, reporting each operation done.

    Operation 2n-1 is the n-th commit (replacing all bridges, so that a torn
    file would show), operation 2n the n-th aux write.
    """
    db = Database(path)
    done = _state_of(db)
    while True:
        done += 1
        if done % 2:
            n = (done + 1) // 2
            with db.transaction() as txn:
                bridges = []
                for k in range(3):
                    ports = []
                    for p in range(4):
                        name = f"p{n}-{k}-{p}"
                        iface = txn.insert("Interface", {"name": name, "type": "dummy",
                                                         "options": {"x": "y" * 100}})
                        ports.append(txn.insert("Port", {"name": name, "interfaces": [iface]}))
                    bridges.append(txn.insert("Bridge", {"name": f"br{n}-{k}", "ports": ports}))
                txn.update("Open_vSwitch", txn.root_uuid,
                           {"bridges": bridges, "external_ids": {"counter": str(n)}})
        else:
            db.set_aux("counter", done // 2)
        os.write(progress_fd, f"{done}\n".encode())


def _run_and_kill(path: str, rng: random.Random) -> int:
    """Start a writer, kill it at a random moment; the last operation it reported."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the writer; it never returns into pytest
        os.close(r)
        try:
            _writer(path, w)
        finally:
            os._exit(1)
    os.close(w)
    reported = b""
    try:
        # Wait until it is committing, then let it run a random while.
        select.select([r], [], [], 10)
        time.sleep(rng.uniform(0, 0.03))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        while chunk := os.read(r, 65536):
            reported += chunk
    finally:
        os.close(r)
    lines = reported.split()
    return int(lines[-1]) if lines else -1


def test_kill_9_at_random_moments_leaves_a_loadable_prefix(tmp_path):
    path = str(tmp_path / "conf.db")
    rng = random.Random(7)
    previous = 0
    progressed = 0
    for _ in range(KILLS):
        acknowledged = _run_and_kill(path, rng)
        with Database(path) as db:
            held = _state_of(db)
        # Everything acknowledged is there; at most the one in flight is extra.
        assert held >= max(acknowledged, previous)
        assert held <= max(acknowledged, previous) + 1
        progressed += held > previous
        previous = held
    assert progressed >= KILLS // 2  # the writers did get work done between kills
